package sluice

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testServer is one real `sluice serve` on free ports with a temporary data directory.
type testServer struct {
	name     string
	dir      string
	args     []string
	cmd      *exec.Cmd
	exited   chan struct{}
	log      *os.File
	HTTPAddr string
	WireAddr string
	Token    string
}

func (s *testServer) URL() string { return "http://" + s.HTTPAddr }

func sluiceBin() string {
	if b := os.Getenv("SLUICE_BIN"); b != "" {
		return b
	}
	return "/work/main/target/debug/sluice"
}

const testToken = "go-client-test-token-0123456789"

func startServer(name, token string, args ...string) (*testServer, error) {
	dir, err := os.MkdirTemp("", "sluice-go-"+name+"-")
	if err != nil {
		return nil, err
	}
	s := &testServer{name: name, dir: dir, Token: token, args: args}
	s.log, err = os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.launch("127.0.0.1:0", "127.0.0.1:0"); err != nil {
		s.log.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// launch starts the process on the data directory and waits until it is ready.
func (s *testServer) launch(httpAddr, wireAddr string) error {
	data := filepath.Join(s.dir, "data")
	_ = os.Remove(filepath.Join(data, "server.json"))
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLUICE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "SLUICE_LOG_LEVEL=warn")
	if s.Token != "" {
		env = append(env, "SLUICE_AUTH_BEARER_TOKEN="+s.Token)
	}
	s.cmd = exec.Command(sluiceBin(), append([]string{"serve", "--http-addr", httpAddr, "--wire-addr", wireAddr, "--data-dir", data}, s.args...)...)
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", sluiceBin(), err)
	}
	exited := make(chan struct{})
	s.exited = exited
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	ready := false
	for !ready && time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("sluice serve (%s) exited: %s", s.name, s.tail())
		default:
		}
		var info struct {
			PID      int    `json:"pid"`
			HTTPAddr string `json:"http_addr"`
			WireAddr string `json:"wire_addr"`
		}
		if b, err := os.ReadFile(filepath.Join(data, "server.json")); err == nil && json.Unmarshal(b, &info) == nil && info.PID == s.cmd.Process.Pid {
			s.HTTPAddr, s.WireAddr = info.HTTPAddr, info.WireAddr
			ready = true
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for ready && time.Now().Before(deadline) {
		resp, err := http.Get(s.URL() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("sluice serve (%s) not ready: %s", s.name, s.tail())
}

// kill stops the process (SIGTERM, then SIGKILL after 15 s), keeping the data directory.
func (s *testServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// restart stops the server and starts it again on the same data directory and addresses.
func (s *testServer) restart() error {
	s.kill()
	return s.launch(s.HTTPAddr, s.WireAddr)
}

func (s *testServer) tail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func (s *testServer) stop() {
	s.kill()
	if s.log != nil {
		s.log.Close()
	}
	os.RemoveAll(s.dir)
}

func (s *testServer) client(t testing.TB, opts ...Option) *Client {
	t.Helper()
	o := []Option{WithWireAddr(s.WireAddr)}
	if s.Token != "" {
		o = append(o, WithToken(s.Token))
	}
	c, err := NewClient(s.URL(), append(o, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

var (
	devServer     *testServer
	authServer    *testServer
	replicaServer *testServer
)

func TestMain(m *testing.M) {
	rand.Seed(time.Now().UnixNano())
	var err error
	var started []*testServer
	stopAll := func() {
		for _, s := range started {
			s.stop()
		}
	}
	for _, spec := range []struct {
		dst   **testServer
		name  string
		token string
		args  []string
	}{
		{&devServer, "dev", "", nil},
		{&authServer, "auth", testToken, nil},
		{&replicaServer, "replica", "", []string{"--role", "replica"}},
	} {
		*spec.dst, err = startServer(spec.name, spec.token, spec.args...)
		if err != nil {
			fmt.Fprintln(os.Stderr, "test setup:", err)
			stopAll()
			os.Exit(1)
		}
		started = append(started, *spec.dst)
	}
	code := m.Run()
	stopAll()
	os.Exit(code)
}

func uniq(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e9, rand.Intn(1e6))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
