package eif

import (
	"crypto/sha512"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// benchEIF writes an EIF of about NITROVM_BENCH_EIF_MB MiB (default 64; use
// 1024 for the 1 GiB measurement) shaped like nitro-cli's: a 8 MiB kernel, a
// 4 MiB bootstrap ramdisk and the rest as the application ramdisk.
func benchEIF(b *testing.B) string {
	b.Helper()
	mb := 64
	if s := os.Getenv("NITROVM_BENCH_EIF_MB"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 16 {
			b.Fatalf("NITROVM_BENCH_EIF_MB=%q: want an integer >= 16", s)
		}
		mb = v
	}
	dir := b.TempDir()
	blob := func(name string, size int64) Blob {
		p := filepath.Join(dir, name)
		fd, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = byte(i*7 + i>>9)
		}
		for left := size; left > 0; left -= int64(len(buf)) {
			if _, err := fd.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				b.Fatal(err)
			}
		}
		b.Cleanup(func() { fd.Close() })
		return io.NewSectionReader(fd, 0, size)
	}
	opts := BuildOptions{
		Kernel:   blob("kernel", 8<<20),
		Cmdline:  "console=ttyS0",
		Ramdisks: []Blob{blob("rd0", 4<<20), blob("rd1", int64(mb-12)<<20)},
		Name:     "bench",
	}
	p := filepath.Join(dir, "bench.eif")
	out, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Build(out, opts); err != nil {
		b.Fatal(err)
	}
	if err := out.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkMeasure compares File.Measure (PCR0, PCR1, PCR2 and the CRC in
// one pass) with the floor, one SHA-384 pass over the same file; the ratio
// of their ns/op is the figure of merit (goal <= 1.2).
func BenchmarkMeasure(b *testing.B) {
	p := benchEIF(b)
	st, _ := os.Stat(p)
	b.Run("measure", func(b *testing.B) {
		b.SetBytes(st.Size())
		for b.Loop() {
			f, err := Open(p)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Measure(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("sha384-floor", func(b *testing.B) {
		b.SetBytes(st.Size())
		buf := make([]byte, chunkSize)
		for b.Loop() {
			fd, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			h := sha512.New384()
			if _, err := io.CopyBuffer(h, fd, buf); err != nil {
				b.Fatal(err)
			}
			fd.Close()
		}
	})
}
