package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMissingFeatures(t *testing.T) {
	answer := func(err error) func() error { return func() error { return err } }
	fs := []feature{
		{"ok", answer(nil)},
		{"enosys", answer(unix.ENOSYS)},
		{"einval", answer(unix.EINVAL)},
		{"eperm", answer(unix.EPERM)},
		{"file", answer(errMissing)},
		{"family", answer(unix.EAFNOSUPPORT)},
		{"efault", answer(unix.EFAULT)},
	}
	if got, want := missingFeatures(fs), []string{"enosys", "file", "family"}; !reflect.DeepEqual(got, want) {
		t.Errorf("missingFeatures: got %q, want %q", got, want)
	}
}

func TestFileProbes(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "filesystems")
	if err := os.WriteFile(list, []byte("nodev\tsysfs\nnodev\toverlay\n\text4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("net:[4026531840]", filepath.Join(dir, "net")); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		probe func() error
		want  error
	}{
		{"field present", fileHas(list, "overlay"), nil},
		{"first field", fileHas(list, "ext4"), nil},
		{"part of a field only", fileHas(list, "over"), errMissing},
		{"no such file", fileHas(filepath.Join(dir, "none"), "overlay"), errMissing},
		{"dangling symbolic link exists", fileExists(filepath.Join(dir, "net")), nil},
		{"no such path", fileExists(filepath.Join(dir, "none")), errMissing},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.probe(); got != c.want {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

// TestAppFeaturesHere runs every probe on the machine running the test:
// none may fail in another way than by reporting the feature missing, and
// the names must be unique.
func TestAppFeaturesHere(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range appFeatures() {
		if seen[f.name] {
			t.Errorf("feature %q listed twice", f.name)
		}
		seen[f.name] = true
	}
	t.Logf("missing on this machine: %q", missingFeatures(appFeatures()))
}
