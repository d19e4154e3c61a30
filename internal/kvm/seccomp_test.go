package kvm

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

// TestIoctlsComplete checks that every ioctl request constant of const.go
// (the first const block, "ioctl request numbers") is in Ioctls, so the
// seccomp allowlist cannot miss one.
func TestIoctlsComplete(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "const.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, io := range Ioctls() {
		listed["_"+io.Name] = true
	}
	var found int
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST || g.Doc == nil || !strings.Contains(g.Doc.Text(), "ioctl request numbers") {
			continue
		}
		for _, spec := range g.Specs {
			for _, n := range spec.(*ast.ValueSpec).Names {
				found++
				if !listed[n.Name] {
					t.Errorf("%s is not in Ioctls()", n.Name)
				}
			}
		}
	}
	if found != len(Ioctls()) {
		t.Errorf("const.go declares %d ioctl requests, Ioctls lists %d", found, len(Ioctls()))
	}
}
