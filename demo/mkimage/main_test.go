package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	os.WriteFile(bin, []byte("\x7fELF demo"), 0o755)
	build := func(out, greeting, epoch string) []byte {
		t.Helper()
		p := filepath.Join(dir, out)
		if err := run(bin, p, DefaultTag, greeting, epoch); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := build("a.tar", "hi\n", ""), build("b.tar", "hi\n", "")
	if !bytes.Equal(a, b) {
		t.Error("two builds differ")
	}
	if c := build("c.tar", "bye\n", ""); bytes.Equal(a, c) {
		t.Error("a different greeting gave the same image")
	}
	if d := build("d.tar", "hi\n", "1700000000"); bytes.Equal(a, d) {
		t.Error("SOURCE_DATE_EPOCH had no effect")
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hello")
	os.WriteFile(bin, []byte("x"), 0o755)
	tests := []struct {
		name, bin, out, tag, epoch string
	}{
		{"no binary flag", "", filepath.Join(dir, "o.tar"), DefaultTag, ""},
		{"no output flag", bin, "", DefaultTag, ""},
		{"missing binary", filepath.Join(dir, "none"), filepath.Join(dir, "o.tar"), DefaultTag, ""},
		{"bad tag", bin, filepath.Join(dir, "o.tar"), "UP:::", ""},
		{"bad epoch", bin, filepath.Join(dir, "o.tar"), DefaultTag, "soon"},
		{"unwritable output", bin, filepath.Join(dir, "none", "o.tar"), DefaultTag, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := run(tt.bin, tt.out, tt.tag, "hi", tt.epoch); err == nil {
				t.Error("got nil error, want an error")
			}
		})
	}
}
