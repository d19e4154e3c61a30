package kmod

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadErrors checks the errors name the module file.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	notModule := filepath.Join(dir, "not-a-module.ko")
	if err := os.WriteFile(notModule, []byte("not ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "missing.ko"), "missing.ko"},
		{"not a module", notModule, "not-a-module.ko"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Load(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%s) = %v, want an error naming %s", tt.path, err, tt.want)
			}
		})
	}
}
