package main

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// Limits on the /cmd and /env files, which come from the (untrusted) image.
const (
	// configMaxLines bounds the number of lines read from /cmd or /env.
	configMaxLines = 1 << 16
	// configMaxLineBytes bounds one line of /cmd or /env (Linux MAX_ARG_STRLEN).
	configMaxLineBytes = 128 << 10
)

// defaultPath is the PATH AWS's init searches commands in and gives a
// command whose image sets no environment.
const defaultPath = "/sbin:/usr/sbin:/bin:/usr/bin"

// readLines reads a cmd or env file: one entry per line, each ended by a
// newline (a missing final newline is accepted). Empty lines are entries
// too, as in AWS's init.
func readLines(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), configMaxLineBytes)
	var out []string
	for sc.Scan() {
		if len(out) == configMaxLines {
			return nil, fmt.Errorf("more than %d lines", configMaxLines)
		}
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read lines: %w", err)
	}
	return out, nil
}

// envPath returns the PATH entry of env, or "".
func envPath(env []string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], "PATH="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds the executable file for name: names with a slash are used
// as they are; others are searched in AWS's default PATH and then in the
// image's PATH. isExec reports whether a path is an executable regular file.
func lookPath(name string, env []string, isExec func(string) bool) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty command")
	}
	if strings.Contains(name, "/") {
		return name, nil
	}
	dirs := strings.Split(defaultPath, ":")
	if p := envPath(env); p != "" {
		dirs = append(dirs, strings.Split(p, ":")...)
	}
	for _, d := range dirs {
		if d == "" {
			d = "."
		}
		p := path.Join(d, name)
		if isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in %s:%s", name, defaultPath, envPath(env))
}
