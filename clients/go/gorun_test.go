package sluice

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goCommand is `go args...` in dir, offline (the client is standard library only), with the
// environment's GOFLAGS, GOPROXY, GOWORK and SLUICE_* left out.
func goCommand(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	bin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("go"); err != nil {
			t.Fatal("no go command to run the program with")
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		switch k := kv[:strings.IndexByte(kv, '=')]; {
		case k == "GOFLAGS", k == "GOPROXY", k == "GOWORK", strings.HasPrefix(k, "SLUICE_"):
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off")
	return cmd
}

func runGo(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(cmd.Args, " "), cmd.Dir, err, out)
	}
	t.Logf("%s (%v): %s", strings.Join(cmd.Args[1:], " "), time.Since(start).Round(time.Millisecond), out)
	return string(out)
}

const fiveLineMain = `package main

import (
	"context"
	"fmt"
	"os"

	sluice "github.com/sluice-db/sluice/clients/go"
)

func main() {
	c, _ := sluice.NewClient(os.Args[1])
	err := c.TimeSeries().PutBuffered(context.Background(), sluice.DataPoint{Metric: "cpu_usage", Entity: "server01", Value: 75.5})
	stats, err2 := c.TimeSeries().GetBufferStats(context.Background())
	fmt.Println("put:", err, "stats:", err2, "points_buffered:", stats.PointsBuffered)
}
`

// A program in an empty module that requires the client through a replace directive builds
// offline and runs against a server with the seed's names.
func TestGoRunFiveLineProgram(t *testing.T) {
	client, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mod := "module example.com/sluicefive\n\ngo 1.19\n\nrequire github.com/sluice-db/sluice/clients/go v0.0.0\n\n" +
		"replace github.com/sluice-db/sluice/clients/go => " + client + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(fiveLineMain), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runGo(t, goCommand(t, dir, "run", ".", devServer.URL()))
	m := regexp.MustCompile(`^put: <nil> stats: <nil> points_buffered: (\d+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("unexpected output %q", out)
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Fatalf("points_buffered %d after a buffered put", n)
	}
}

// examples/go runs as written.
func TestExampleQuickstartRuns(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "go")
	before, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	out := runGo(t, goCommand(t, dir, "run", "./quickstart", devServer.URL()))
	if !regexp.MustCompile(`^points buffered: \d+, flushed: \d+, flushes: \d+, compression ratio: [0-9.]+\n$`).MatchString(out) {
		t.Fatalf("unexpected output %q", out)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "go.mod")); string(after) != string(before) {
		t.Fatalf("go run changed examples/go/go.mod:\n%s", after)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.sum")); err == nil {
		t.Fatal("go run left a go.sum in examples/go")
	}
}
