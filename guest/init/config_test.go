package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestReadLines(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
		wantErr  bool
	}{
		{"empty", "", nil, false},
		{"one", "/bin/hello\n", []string{"/bin/hello"}, false},
		{"no final newline", "a\nb", []string{"a", "b"}, false},
		{"empty line kept", "a\n\nb\n", []string{"a", "", "b"}, false},
		{"spaces kept", "echo\nhello world\n", []string{"echo", "hello world"}, false},
		{"line too long", strings.Repeat("x", configMaxLineBytes+1), nil, true},
		{"too many lines", strings.Repeat("x\n", configMaxLines+1), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readLines(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLookPath(t *testing.T) {
	exists := map[string]bool{"/bin/sh": true, "/app/bin/hello": true}
	isExec := func(p string) bool { return exists[p] }
	tests := []struct {
		name    string
		cmd     string
		env     []string
		want    string
		wantErr bool
	}{
		{"absolute", "/app/bin/hello", nil, "/app/bin/hello", false},
		{"relative with slash", "./x", nil, "./x", false},
		{"default path", "sh", nil, "/bin/sh", false},
		{"image path", "hello", []string{"PATH=/usr/local/bin:/app/bin"}, "/app/bin/hello", false},
		{"not found", "nope", []string{"PATH=/app/bin"}, "", true},
		{"empty", "", nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lookPath(tt.cmd, tt.env, isExec)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzReadLines(f *testing.F) {
	f.Add("/bin/hello\n")
	f.Add("PATH=/bin\nA=b c\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := readLines(strings.NewReader(in))
		if err != nil {
			return
		}
		for _, l := range got {
			if strings.Contains(l, "\n") {
				t.Fatalf("line %q contains a newline", l)
			}
		}
	})
}
