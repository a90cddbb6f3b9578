// Command mlescat is a small Mles client for the terminal: it joins a
// channel, sends each line of standard input as a text message and prints
// every message that arrives, one per line.
//
//	mlescat [-k] wss://localhost:8443 -uid alice -channel example [-auth TOKEN]
//
// -k skips certificate verification (the server's self-signed default).
// At the end of its input mlescat closes the session and exits; with
// -listen it ignores standard input and stays, printing what arrives,
// until the server closes the session (or it is interrupted).
// With MLES_KEY set in mlescat's environment and no -auth, the token is
// computed from it, as MlesTalk does.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mles/mles/codec"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mlescat:", err)
		os.Exit(1)
	}
}

func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("mlescat", flag.ContinueOnError)
	insecure := fs.Bool("k", false, "skip TLS certificate verification")
	uid := fs.String("uid", "", "user id (required)")
	channel := fs.String("channel", "", "channel to join (required)")
	auth := fs.String("auth", "", "auth token (default: computed from MLES_KEY when set)")
	listen := fs.Bool("listen", false, "only print what arrives: ignore standard input and stay until the server closes the session")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mlescat [-k] [-listen] URL -uid U -channel C [-auth A]")
		fs.PrintDefaults()
	}
	// The URL may stand anywhere among the flags: the flag package stops
	// at the first non-flag, so take it out and parse the rest again.
	var url string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		if url != "" {
			return fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
		url, args = fs.Arg(0), fs.Args()[1:]
	}
	if url == "" || *uid == "" || *channel == "" {
		fs.Usage()
		return errors.New("URL, -uid and -channel are required")
	}
	if *auth == "" {
		if key, ok := os.LookupEnv("MLES_KEY"); ok {
			*auth = codec.AuthToken(*uid, *channel, key)
		}
	}

	d := websocket.Dialer{
		Subprotocols:     []string{codec.Subprotocol},
		HandshakeTimeout: 10 * time.Second,
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: *insecure},
	}
	ws, resp, err := d.Dial(url, http.Header{})
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("%w: %s %s", err, resp.Status, body)
		}
		return err
	}
	defer ws.Close()

	hdr := map[string]string{"uid": *uid, "channel": *channel}
	if *auth != "" {
		hdr["auth"] = *auth
	}
	b, _ := json.Marshal(hdr)
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return err
	}

	readErr := make(chan error, 1)
	go func() {
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				readErr <- err
				return
			}
			fmt.Fprintf(out, "%s\n", msg)
		}
	}()

	if *listen {
		return closedErr(<-readErr)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()

	for {
		select {
		case err := <-readErr:
			return closedErr(err)
		case line, ok := <-lines:
			if !ok {
				// End of input: close politely and wait briefly for the
				// echo. A refusal of the join (1008) may come first: the
				// server reads the header before our close.
				_ = ws.WriteControl(websocket.CloseMessage,
					websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				select {
				case err := <-readErr:
					var ce *websocket.CloseError
					if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
						return nil // the echo of our close
					}
					return closedErr(err)
				case <-time.After(2 * time.Second):
				}
				return nil
			}
			if err := ws.WriteMessage(websocket.TextMessage, []byte(line)); err != nil {
				// Closed under us (a refused join): say how, if the
				// reader learns it soon.
				select {
				case rerr := <-readErr:
					return closedErr(rerr)
				case <-time.After(2 * time.Second):
				}
				return err
			}
		}
	}
}

// closedErr reports how the connection ended: the server's close code and
// reason, or the read error.
func closedErr(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("closed by server: %d %s", ce.Code, ce.Text)
	}
	return err
}
