// Command checkunsafe fails if any non-test Go file imports "unsafe" outside
// a file named *_unsafe.go, in the manner of gVisor's checkunsafe analyzer.
//
// Usage: go run ./internal/tools/checkunsafe [dir|./...]
package main

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = strings.TrimSuffix(os.Args[1], "...")
		if root == "" || root == "./" {
			root = "."
		}
	}
	bad, err := check(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkunsafe:", err)
		os.Exit(1)
	}
	for _, b := range bad {
		fmt.Fprintf(os.Stderr, "%s: imports \"unsafe\" outside a *_unsafe.go file\n", b)
	}
	if len(bad) > 0 {
		os.Exit(1)
	}
}

// check returns the Go files under root that import unsafe but are neither
// tests nor named *_unsafe.go.
func check(root string) ([]string, error) {
	var bad []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, "_unsafe.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == "unsafe" {
				bad = append(bad, path)
			}
		}
		return nil
	})
	return bad, err
}
