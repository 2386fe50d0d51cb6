// yamux_peer: a hashicorp/yamux test and benchmark peer for virtrio.
//
// Build offline: GO111MODULE=off GOPATH=/usr/share/gocode go build -o tests/peers/bin/yamux_peer .
// The demo guest carries a static build (CGO_ENABLED=0) serving its virtio-serial port
// org.virtrio.mux0 in echo mode (-port /dev/virtio-ports/org.virtrio.mux0).
//
// Addresses are tcp:HOST:PORT or unix:PATH. A listening peer prints "listening ADDR" once ready
// and serves every connection; a connecting peer runs one client mode and exits (status 1 on
// any mismatch). Events worth asserting on are printed one per line on stdout.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

var (
	listenAddr  = flag.String("listen", "", "serve on tcp:HOST:PORT or unix:PATH")
	connectAddr = flag.String("connect", "", "connect to tcp:HOST:PORT or unix:PATH")
	portPath    = flag.String("port", "", "serve one session at a time on a device (a virtio-serial port), reopened when the host goes away")
	mode        = flag.String("mode", "echo", "server: echo|sink|slow|goaway|noaccept; client: echo|reset|send|open|pair-bench")
	window      = flag.Int("window", 256*1024, "MaxStreamWindowSize")
	backlog     = flag.Int("backlog", 256, "AcceptBacklog")
	keepalive   = flag.Duration("keepalive", 0, "keepalive interval (0: off)")
	writeTO     = flag.Duration("write-timeout", 10*time.Second, "ConnectionWriteTimeout (also the keepalive answer deadline)")
	streams     = flag.Int("streams", 1, "client: concurrent streams")
	nbytes      = flag.Int("bytes", 1<<20, "client: bytes per stream")
	chunk       = flag.Int("chunk", 64*1024, "write size / slow reader read size")
	delay       = flag.Duration("delay", 0, "slow reader: pause between reads")
	count       = flag.Int("count", 1000, "open: round trips")
	hash        = flag.Bool("hash", true, "sink: reply with the SHA-256 (off: \"-\", for benchmarks)")

	out   = bufio.NewWriter(os.Stdout)
	outMu sync.Mutex
)

func say(format string, args ...interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(out, format+"\n", args...)
	out.Flush()
}

func fail(format string, args ...interface{}) {
	say("error "+format, args...)
	os.Exit(1)
}

func split(addr string) (string, string) {
	i := strings.Index(addr, ":")
	if i < 0 {
		fail("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

func config() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = *backlog
	c.MaxStreamWindowSize = uint32(*window)
	c.EnableKeepAlive = *keepalive > 0
	if *keepalive > 0 {
		c.KeepAliveInterval = *keepalive
	}
	c.ConnectionWriteTimeout = *writeTO
	c.LogOutput = os.Stderr
	return c
}

// pattern is the deterministic payload of stream i.
func pattern(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j/251)
	}
	return b
}

func main() {
	flag.Parse()
	switch {
	case *portPath != "":
		servePort()
	case *listenAddr != "":
		serve()
	case *connectAddr != "":
		network, address := split(*connectAddr)
		conn, err := net.Dial(network, address)
		if err != nil {
			fail("dial: %v", err)
		}
		framed := newFrameConn(conn)
		session, err := yamux.Client(framed, config())
		if err != nil {
			fail("client: %v", err)
		}
		runClient(session, framed)
		session.Close()
	default:
		fail("give -listen or -connect")
	}
}

func serve() {
	network, address := split(*listenAddr)
	ln, err := net.Listen(network, address)
	if err != nil {
		fail("listen: %v", err)
	}
	say("listening %s:%s", network, ln.Addr().String())
	for {
		conn, err := ln.Accept()
		if err != nil {
			fail("accept: %v", err)
		}
		go serveConn(conn)
	}
}

// servePort runs a yamux server over the device at -port. A read returns EOF while no host is
// connected (virtio_console), which ends the session: the port is opened again for the next
// host session after a short pause (the guest side cannot wait for the host to connect).
func servePort() {
	say("serving %s", *portPath)
	for {
		f, err := os.OpenFile(*portPath, os.O_RDWR, 0)
		if err != nil {
			fail("open: %v", err)
		}
		serveConn(f)
		f.Close()
		time.Sleep(100 * time.Millisecond)
	}
}

func serveConn(conn io.ReadWriteCloser) {
	session, err := yamux.Server(conn, config())
	if err != nil {
		say("error server: %v", err)
		return
	}
	if *mode == "pair-bench" { // the server half of Go<->Go: sink
		*mode = "sink"
	}
	if *mode == "noaccept" { // streams pile up in the backlog; the overflow is RST by yamux
		<-session.CloseChan()
		say("closed")
		return
	}
	first := true
	for {
		stream, err := session.AcceptStream()
		if err != nil {
			say("closed %v", err)
			return
		}
		if *mode == "goaway" && first {
			first = false
			go func(s *yamux.Stream) {
				// answer on the in-flight stream only after the GoAway went out
				time.Sleep(50 * time.Millisecond)
				echo(s)
			}(stream)
			if err := session.GoAway(); err != nil {
				say("error goaway: %v", err)
			}
			say("goaway sent")
			continue
		}
		switch *mode {
		case "echo", "goaway":
			go echo(stream)
		case "sink":
			go sink(stream, 0)
		case "slow":
			go sink(stream, *delay)
		default:
			fail("unknown server mode %q", *mode)
		}
	}
}

func echo(s *yamux.Stream) {
	n, err := io.Copy(s, s)
	if err != nil {
		say("reset %d after %d: %v", s.StreamID(), n, err)
		return
	}
	s.Close()
}

// sink reads to EOF (slowly with a delay), then answers "COUNT SHA256" and closes: a reply
// after the peer's FIN.
func sink(s *yamux.Stream, pause time.Duration) {
	h := sha256.New()
	buf := make([]byte, *chunk)
	total := 0
	for {
		n, err := s.Read(buf)
		total += n
		if *hash {
			h.Write(buf[:n])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			say("reset %d after %d: %v", s.StreamID(), total, err)
			return
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
	digest := "-"
	if *hash {
		digest = hex.EncodeToString(h.Sum(nil))
	}
	fmt.Fprintf(s, "%d %s", total, digest)
	s.Close()
}

func runClient(session *yamux.Session, framed *frameConn) {
	switch *mode {
	case "echo":
		echoClient(session)
	case "reset":
		resetClient(session, framed)
	case "send":
		start := time.Now()
		sendClient(session)
		elapsed := time.Since(start).Seconds()
		say("sent %d in %.6f s: %.1f MB/s", *streams**nbytes, elapsed,
			float64(*streams**nbytes)/elapsed/1e6)
	case "open":
		start := time.Now()
		one := []byte{1}
		for i := 0; i < *count; i++ {
			s, err := session.OpenStream()
			if err != nil {
				fail("open: %v", err)
			}
			if _, err := s.Write(one); err != nil {
				fail("write: %v", err)
			}
			if _, err := io.ReadFull(s, one); err != nil {
				fail("read: %v", err)
			}
			s.Close()
		}
		say("open rtt %.3f us", time.Since(start).Seconds()/float64(*count)*1e6)
	case "ping":
		for i := 0; i < *count; i++ {
			if _, err := session.Ping(); err != nil {
				fail("ping: %v", err)
			}
		}
		say("pinged %d", *count)
	default:
		fail("unknown client mode %q", *mode)
	}
}

// echoClient opens many streams, writes each its pattern and checks the echo.
func echoClient(session *yamux.Session) {
	var wg sync.WaitGroup
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			echoStream(session, i, nil)
		}(i)
	}
	wg.Wait()
	say("echoed %d x %d", *streams, *nbytes)
}

// echoStream opens a stream, writes stream i's pattern on it in -chunk pieces (calling
// afterFirst, if any, once the first piece is out) and checks that all of it comes back.
func echoStream(session *yamux.Session, i int, afterFirst func()) {
	s, err := session.OpenStream()
	if err != nil {
		fail("open %d: %v", i, err)
	}
	payload := pattern(i, *nbytes)
	go func() {
		if err := writeChunks(s, payload, afterFirst); err != nil {
			say("error write %d: %v", i, err)
		}
	}()
	// hashicorp's Read after its own Close() may report a false EOF: read first.
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(s, got); err != nil {
		fail("read %d: %v", i, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		fail("stream %d: echo differs", i)
	}
	s.Close()
}

// writeChunks writes payload in -chunk pieces, calling afterFirst (if any) after the first.
func writeChunks(w io.Writer, payload []byte, afterFirst func()) error {
	for off := 0; off < len(payload); off += *chunk {
		end := off + *chunk
		if end > len(payload) {
			end = len(payload)
		}
		if _, err := w.Write(payload[off:end]); err != nil {
			return err
		}
		if off == 0 && afterFirst != nil {
			afterFirst()
		}
	}
	return nil
}

// sendClient writes -bytes on each of -streams streams, half-closes, and waits for the
// sink's "COUNT SHA256" reply.
func sendClient(session *yamux.Session) {
	var wg sync.WaitGroup
	buf := make([]byte, *chunk)
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s, err := session.OpenStream()
			if err != nil {
				fail("open %d: %v", i, err)
			}
			for left := *nbytes; left > 0; left -= len(buf) {
				n := len(buf)
				if left < n {
					n = left
				}
				if _, err := s.Write(buf[:n]); err != nil {
					fail("write %d: %v", i, err)
				}
			}
			s.Close()
			digest := 64
			if !*hash {
				digest = 1
			}
			reply := readReply(s, len(fmt.Sprintf("%d ", *nbytes))+digest)
			if !strings.HasPrefix(string(reply), fmt.Sprintf("%d ", *nbytes)) {
				fail("stream %d: sink replied %q", i, reply)
			}
		}(i)
	}
	wg.Wait()
}

// readReply reads size bytes after our own Close(): this hashicorp version reports a false EOF
// whenever its buffer is momentarily empty on a locally closed stream, so EOF means "retry"
// until the deadline.
func readReply(s *yamux.Stream, size int) []byte {
	reply := make([]byte, 0, size)
	buf := make([]byte, size)
	deadline := time.Now().Add(30 * time.Second)
	for len(reply) < size && time.Now().Before(deadline) {
		n, err := s.Read(buf[:size-len(reply)])
		reply = append(reply, buf[:n]...)
		if err == io.EOF && n == 0 {
			time.Sleep(100 * time.Microsecond)
		} else if err != nil && err != io.EOF {
			fail("reply %d: %v", s.StreamID(), err)
		}
	}
	return reply
}

// frameConn lets a test inject a whole frame between the session's own: it follows the frame
// boundaries in what the session writes (a header, then a Data frame's body, written apart)
// and writes an injected frame only at one. This yamux version has no Stream.Reset.
type frameConn struct {
	net.Conn
	mu       sync.Mutex
	boundary *sync.Cond
	header   []byte // the current frame's header bytes seen so far
	body     int    // bytes of the current Data frame's body still to come
}

func newFrameConn(conn net.Conn) *frameConn {
	c := &frameConn{Conn: conn}
	c.boundary = sync.NewCond(&c.mu)
	return c
}

func (c *frameConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := c.Conn.Write(b)
	for rest := b[:n]; len(rest) > 0; {
		if c.body > 0 {
			take := c.body
			if take > len(rest) {
				take = len(rest)
			}
			c.body -= take
			rest = rest[take:]
			continue
		}
		take := 12 - len(c.header)
		if take > len(rest) {
			take = len(rest)
		}
		c.header = append(c.header, rest[:take]...)
		rest = rest[take:]
		if len(c.header) == 12 {
			if c.header[1] == 0 { // Data: its length is a body that follows
				c.body = int(uint32(c.header[8])<<24 | uint32(c.header[9])<<16 |
					uint32(c.header[10])<<8 | uint32(c.header[11]))
			}
			c.header = c.header[:0]
		}
	}
	c.boundary.Broadcast()
	return n, err
}

// reset sends a RST for stream id between two of the session's frames.
func (c *frameConn) reset(id uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.header) > 0 || c.body > 0 {
		c.boundary.Wait()
	}
	frame := []byte{0, 1, 0, 8, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id), 0, 0, 0, 0}
	_, err := c.Conn.Write(frame)
	return err
}

// resetClient echoes on -streams streams like echoClient, but resets the first one mid-echo
// (once its first echoed bytes are back, while the others are still under way); every other
// stream must complete, and a stream opened afterwards too: the session survived.
func resetClient(session *yamux.Session, framed *frameConn) {
	victim, err := session.OpenStream()
	if err != nil {
		fail("open victim: %v", err)
	}
	payload := pattern(99, *nbytes)
	go func() { _ = writeChunks(victim, payload, nil) }()
	var wg sync.WaitGroup
	started := make(chan struct{})
	for i := 1; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var afterFirst func()
			if i == 1 {
				afterFirst = func() { close(started) }
			}
			echoStream(session, i, afterFirst)
		}(i)
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(victim, first); err != nil {
		fail("read victim: %v", err)
	}
	<-started
	if err := framed.reset(victim.StreamID()); err != nil {
		fail("reset: %v", err)
	}
	say("reset %d mid-echo", victim.StreamID())
	wg.Wait()
	after, err := session.OpenStream()
	if err != nil {
		fail("open after the reset: %v", err)
	}
	if _, err := after.Write([]byte("after")); err != nil {
		fail("write after the reset: %v", err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(after, got); err != nil || string(got) != "after" {
		fail("echo after the reset: %q %v", got, err)
	}
	say("echoed %d x %d around a reset", *streams-1, *nbytes)
}
