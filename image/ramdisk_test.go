package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var helloConfig = v1.Config{Cmd: []string{"/bin/hello", "--greet"}, Env: []string{"PATH=/bin", "GREETING=hi there"}}

func TestUserRamdiskLayout(t *testing.T) {
	img := testImage(t, helloConfig,
		[]tf{ // bottom layer
			{name: "bin/", typ: tar.TypeDir, mode: 0o755},
			{name: "bin/hello", body: "v1", mode: 0o755},
			{name: "etc/passwd", body: "root:x:0:0"},
			{name: "etc/group", body: "root:x:0"},
			{name: "a/old", body: "old"},
			{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
			{name: "dev/null", typ: tar.TypeChar},
			{name: "run", body: "not a dir"},
			{name: "srv/data", body: "shared", uid: 1000},
			{name: "srv/hard", typ: tar.TypeLink, link: "srv/data"},
		},
		[]tf{ // top layer
			{name: "bin/hello", body: "v2", mode: 0o755},
			{name: "etc/.wh.passwd"},
			{name: "a/.wh..wh..opq"},
			{name: "a/new", body: "new"},
			{name: "lib", typ: tar.TypeSymlink, link: "/usr/lib", mode: 0o777},
			{name: "fifo", typ: tar.TypeFifo},
		},
	)
	b := userRamdisk(t, img, UserOptions{})
	names, m := readCpio(t, b)
	// nitro-cli's order: the image in walk order with Docker's init layer
	// and linuxkit's filter applied, then the template's directories and
	// files.
	want := []string{
		"rootfs",
		"rootfs/a", "rootfs/a/new",
		"rootfs/bin", "rootfs/bin/hello",
		"rootfs/dev",
		"rootfs/etc", "rootfs/etc/group", "rootfs/etc/hosts", "rootfs/etc/mtab", "rootfs/etc/resolv.conf",
		"rootfs/fifo", "rootfs/lib",
		"rootfs/proc",
		"rootfs/srv", "rootfs/srv/data", "rootfs/srv/hard",
		"rootfs/sys", "rootfs/tmp",
		"rootfs", "rootfs/dev", "rootfs/run", "rootfs/sys", "rootfs/var", "rootfs/proc", "rootfs/tmp",
		"cmd", "env",
	}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("entries:\n got %q\nwant %q", names, want)
	}
	checks := []struct {
		name string
		mode cpio.FileMode
		body string
		link string
		uid  int
	}{
		{"cmd", cpio.TypeReg | 0o644, "/bin/hello\n--greet\n", "", 0},
		{"env", cpio.TypeReg | 0o644, "PATH=/bin\nGREETING=hi there\n", "", 0},
		{"rootfs/bin/hello", cpio.TypeReg | 0o755, "v2", "", 0},
		{"rootfs/a/new", cpio.TypeReg | 0o644, "new", "", 0},
		{"rootfs/tmp", cpio.TypeDir | 0o755, "", "", 0}, // the template's, written last
		{"rootfs/run", cpio.TypeDir | 0o755, "", "", 0},
		{"rootfs/lib", cpio.TypeSymlink | 0o777, "", "/usr/lib", 0},
		{"rootfs/fifo", cpio.TypeFifo | 0o644, "", "", 0},
		{"rootfs/srv/data", cpio.TypeReg | 0o644, "shared", "", 1000},
		{"rootfs/srv/hard", cpio.TypeSymlink | 0o644, "", "data", 1000},
		{"rootfs/etc/hosts", cpio.TypeReg | 0o755, exportReplaced[0].body, "", 0},
		{"rootfs/etc/resolv.conf", cpio.TypeReg | 0o755, "\n# no resolv.conf configured\n", "", 0},
		{"rootfs/etc/mtab", cpio.TypeSymlink | 0o777, "", "/proc/mounts", 0},
	}
	for _, c := range checks {
		got := m[c.name]
		if got.mode != c.mode || got.body != c.body || got.link != c.link || got.uid != c.uid {
			t.Errorf("%s: got mode %v body %q link %q uid %d, want mode %v body %q link %q uid %d",
				c.name, got.mode, got.body, got.link, got.uid, c.mode, c.body, c.link, c.uid)
		}
	}
}

func TestUserRamdiskReproducible(t *testing.T) {
	files := []tf{{name: "z", body: "z"}, {name: "a/b", body: "b"}, {name: "m", typ: tar.TypeSymlink, link: "a"}}
	a := userRamdisk(t, testImage(t, helloConfig, files), UserOptions{})
	b := userRamdisk(t, testImage(t, helloConfig, files), UserOptions{TempDir: t.TempDir()})
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same image differ")
	}
	// Entry order in the layer does not matter.
	rev := append([]tf(nil), files...)
	sort.Slice(rev, func(i, j int) bool { return rev[i].name > rev[j].name })
	if c := userRamdisk(t, testImage(t, helloConfig, rev), UserOptions{}); !bytes.Equal(a, c) {
		t.Fatal("layer entry order changed the ramdisk")
	}
	d := userRamdisk(t, testImage(t, helloConfig, files), UserOptions{ModTime: time.Unix(1700000000, 0)})
	if bytes.Equal(a, d) {
		t.Fatal("ModTime did not change the ramdisk")
	}
	r := cpio.NewReader(bytes.NewReader(d))
	h, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := h.ModTime.Unix(), int64(1700000000); got != want {
		t.Errorf("mtime: got %v, want %v", got, want)
	}
}

func TestUserRamdiskUntrustedNames(t *testing.T) {
	img := testImage(t, helloConfig, []tf{
		{name: "../../escape", body: "x"},
		{name: "/abs/file", body: "y"},
		{name: "./dot/../file", body: "z"},
		{name: "up", typ: tar.TypeSymlink, link: "/"},
		{name: "up/init", body: "evil"},
		{name: "up2", typ: tar.TypeSymlink, link: "../../.."},
		{name: "up2/etc/x", body: "evil"},
		{name: "nohard", typ: tar.TypeLink, link: "missing"},
	})
	names, _ := readCpio(t, userRamdisk(t, img, UserOptions{}))
	for _, n := range names {
		if strings.Contains(n, "..") || strings.HasPrefix(n, "/") {
			t.Errorf("unsafe name %q in ramdisk", n)
		}
		if strings.HasPrefix(n, "rootfs/up/") || strings.HasPrefix(n, "rootfs/up2/") || n == "rootfs/nohard" {
			t.Errorf("entry %q below a symlink or without a target kept", n)
		}
	}
	want := map[string]bool{"rootfs/escape": true, "rootfs/abs/file": true, "rootfs/file": true, "rootfs/up": true}
	for _, n := range names {
		delete(want, n)
	}
	if len(want) != 0 {
		t.Errorf("missing entries %v", want)
	}
}

func TestUserRamdiskErrors(t *testing.T) {
	big := []tf{{name: "a", body: strings.Repeat("x", 100)}, {name: "b", body: "y"}}
	tests := []struct {
		name string
		img  v1.Image
		opts UserOptions
		want error
		text string
	}{
		{"no command", testImage(t, v1.Config{Env: []string{"A=b"}}, big), UserOptions{}, nil, "neither CMD nor ENTRYPOINT"},
		{"newline in cmd", testImage(t, v1.Config{Cmd: []string{"a\nb"}}, big), UserOptions{}, nil, "newline"},
		{"too many bytes", testImage(t, helloConfig, big), UserOptions{Limits: Limits{MaxBytes: 50}}, ErrLimit, ""},
		{"too many entries", testImage(t, helloConfig, big), UserOptions{Limits: Limits{MaxEntries: 1}}, ErrLimit, ""},
		{"long name", testImage(t, helloConfig, []tf{{name: strings.Repeat("n/", NameMaxBytes/2) + "file", body: ""}}), UserOptions{}, ErrLimit, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteUserRamdisk(context.Background(), new(bytes.Buffer), tt.img, tt.opts)
			if err == nil {
				t.Fatalf("got nil error, want %v %q", tt.want, tt.text)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("got %v, want it to mention %q", err, tt.text)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteUserRamdisk(ctx, new(bytes.Buffer), testImage(t, helloConfig, big), UserOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want %v", err, context.Canceled)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     v1.Config
		wantCmd []string
		wantErr bool
	}{
		{"cmd wins over entrypoint", v1.Config{Entrypoint: []string{"/ep"}, Cmd: []string{"/cmd", "x"}}, []string{"/cmd", "x"}, false},
		{"entrypoint alone", v1.Config{Entrypoint: []string{"/ep", "y"}}, []string{"/ep", "y"}, false},
		{"neither", v1.Config{}, nil, true},
		{"empty cmd", v1.Config{Cmd: []string{}}, nil, true},
		{"NUL in env", v1.Config{Cmd: []string{"/a"}, Env: []string{"A=\x00"}}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, _, err := Config(testImage(t, tt.cfg, nil))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(cmd, tt.wantCmd) {
				t.Errorf("got %q, want %q", cmd, tt.wantCmd)
			}
		})
	}
}

func TestBootRamdisk(t *testing.T) {
	tests := []struct {
		name    string
		opts    BootOptions
		want    []string
		wantErr bool
	}{
		{"nitrovm init", BootOptions{Init: []byte("ELF")}, []string{"dev", "init"}, false},
		{"aws blobs", BootOptions{Init: []byte("ELF"), NSMModule: []byte("KO")}, []string{"dev", "init", "nsm.ko"}, false},
		{"no init", BootOptions{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := WriteBootRamdisk(&buf, tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			names, m := readCpio(t, buf.Bytes())
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("got %q, want %q", names, tt.want)
			}
			if got, want := m["init"].mode, cpio.FileMode(cpio.TypeReg|0o755); got != want {
				t.Errorf("init mode: got %v, want %v", got, want)
			}
			if got, want := m["dev"].mode, cpio.FileMode(cpio.TypeDir|0o755); got != want {
				t.Errorf("dev mode: got %v, want %v", got, want)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	img := testImage(t, helloConfig, []tf{{name: "bin/hello", body: "v1", mode: 0o755}})
	rd, err := Build(context.Background(), img, BootOptions{Init: []byte("init")}, UserOptions{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rd.Paths()); got != 2 {
		t.Errorf("got %d ramdisks, want 2", got)
	}
	if err := rd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(context.Background(), img, BootOptions{}, UserOptions{TempDir: t.TempDir()}); err == nil {
		t.Error("got nil error for a boot ramdisk without init, want an error")
	}
}

func FuzzUserRamdisk(f *testing.F) {
	f.Add(layerTar(f, []tf{{name: "bin/hello", body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "/"}, {name: "l/x", body: "y"}}))
	f.Add(layerTar(f, []tf{{name: "a/.wh..wh..opq"}, {name: ".wh.b"}, {name: "../c", body: "c"}, {name: "h", typ: tar.TypeLink, link: "c"}}))
	f.Fuzz(func(t *testing.T, layer []byte) {
		if len(layer) > 1<<20 {
			t.Skip()
		}
		img := testImage(t, helloConfig)
		img2, err := appendRaw(img, layerFromBytes(t, layer))
		if err != nil {
			t.Skip()
		}
		var buf bytes.Buffer
		if err := WriteUserRamdisk(context.Background(), &buf, img2, UserOptions{Limits: Limits{MaxBytes: 4 << 20, MaxEntries: 1 << 12}}); err != nil {
			return
		}
		names, m := readCpio(t, buf.Bytes())
		// The image part: "rootfs", then its entries in walk order, no
		// duplicates; then the template's fixed tail.
		tail := []string{"rootfs", "rootfs/dev", "rootfs/run", "rootfs/sys", "rootfs/var", "rootfs/proc", "rootfs/tmp", "cmd", "env"}
		if len(names) < len(tail)+1 || names[0] != "rootfs" || !reflect.DeepEqual(names[len(names)-len(tail):], tail) {
			t.Fatalf("entries do not start with rootfs and end with the template: %q", names)
		}
		body := names[1 : len(names)-len(tail)]
		if !sort.SliceIsSorted(body, func(i, j int) bool { return walkLess(body[i], body[j]) }) {
			t.Fatalf("entries not in walk order: %q", body)
		}
		seen := make(map[string]bool)
		for _, n := range body {
			if seen[n] {
				t.Fatalf("duplicate entry %q", n)
			}
			seen[n] = true
			if !strings.HasPrefix(n, "rootfs/") || strings.Contains(n+"/", "/../") {
				t.Fatalf("unsafe name %q", n)
			}
			for i := 0; i < len(n); i++ {
				if n[i] == '/' && m[n[:i]].mode&cpio.ModeType != cpio.TypeDir {
					t.Fatalf("%q has a non-directory parent %q (%v)", n, n[:i], m[n[:i]].mode)
				}
			}
		}
	})
}

func BenchmarkUserRamdisk(b *testing.B) {
	var files []tf
	for i := range 1000 {
		files = append(files, tf{name: "d" + strings.Repeat("x", i%7) + "/f" + string(rune('a'+i%26)) + strings.Repeat("y", i%13), body: strings.Repeat("z", 4096)})
	}
	img := testImage(b, helloConfig, files)
	b.ResetTimer()
	for b.Loop() {
		if err := WriteUserRamdisk(context.Background(), io.Discard, img, UserOptions{TempDir: b.TempDir()}); err != nil {
			b.Fatal(err)
		}
	}
}
