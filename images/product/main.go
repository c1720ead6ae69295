// Command product is drmesh's reference data product: a small HTTP server that serves
// a product's data, and a probe that tests run from inside a pod to try a connection.
//
//	product serve            serve $PRODUCT_DATA (or a default document) on every
//	                         port of $PRODUCT_PORTS (comma separated, default 8080)
//	product --listen=:P ...  the same, on each --listen address (the flags the
//	                         reference mesh's samples pass); other flags are ignored
//	product probe URL        GET URL once; exit 0 only when a connection was made and an
//	                         HTTP answer came back (any status), else say what happened
//	                         and exit 1 (refused, timed out, DNS failure, ...)
//	product probe --every D --for T URL
//	                         the same every D during T, one line per try (each with its
//	                         time); exit 0 when any try got an answer
//
// No dependency but the standard library: the binary is static (CGO_ENABLED=0) and the
// image holds nothing else.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch arg := os.Args[1]; {
	case arg == "serve":
		os.Exit(serve(listenAddrs(os.Args[2:])))
	case strings.HasPrefix(arg, "-"):
		os.Exit(serve(listenAddrs(os.Args[1:])))
	case arg == "probe" && len(os.Args) == 3:
		os.Exit(probe(os.Args[2], timeout()))
	case arg == "probe" && len(os.Args) == 7 && os.Args[2] == "--every" && os.Args[4] == "--for":
		every, err1 := time.ParseDuration(os.Args[3])
		during, err2 := time.ParseDuration(os.Args[5])
		if err1 != nil || err2 != nil || every <= 0 {
			usage()
		}
		os.Exit(probeDuring(os.Args[6], every, during))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: product serve | product probe [--every D --for T] URL")
	os.Exit(2)
}

// timeout of one probe: $PROBE_TIMEOUT (a Go duration), default 2s.
func timeout() time.Duration {
	if v := os.Getenv("PROBE_TIMEOUT"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return d
		}
	}
	return 2 * time.Second
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// listenAddrs: the --listen=ADDR flags, else ":P" for each port of $PRODUCT_PORTS.
func listenAddrs(args []string) []string {
	var addrs []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--listen="); ok {
			addrs = append(addrs, v)
		}
	}
	if len(addrs) > 0 {
		return addrs
	}
	for _, p := range strings.Split(env("PRODUCT_PORTS", "8080"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			addrs = append(addrs, ":"+p)
		}
	}
	return addrs
}

func serve(addrs []string) int {
	host, _ := os.Hostname()
	name := env("PRODUCT_NAME", host)
	data := env("PRODUCT_DATA", fmt.Sprintf(`{"product":%q,"records":[]}`, name))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Product", name)
		io.WriteString(w, data+"\n")
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errs := make(chan error, 8)
	var servers []*http.Server
	for _, addr := range addrs {
		srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, srv)
		go func() {
			fmt.Printf("%s serving on %s\n", name, addr)
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}()
	}
	select {
	case err := <-errs:
		fmt.Fprintln(os.Stderr, "serve:", err)
		return 1
	case <-ctx.Done():
	}
	// Like servers that drain their clients, keep answering for $PRODUCT_DRAIN after SIGTERM.
	if drain, err := time.ParseDuration(os.Getenv("PRODUCT_DRAIN")); err == nil && drain > 0 {
		fmt.Printf("%s draining for %s\n", name, drain)
		time.Sleep(drain)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shutdown)
	}
	return 0
}

// probe makes one GET, without keep-alive or retries, and names the outcome.
func probe(url string, timeout time.Duration) int {
	client := &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	start := time.Now()
	resp, err := client.Get(url)
	elapsed := time.Since(start).Round(time.Millisecond)
	if err != nil {
		fmt.Printf("%s: no answer after %s: %s (%v)\n", url, elapsed, classify(err), err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Printf("%s: HTTP %d after %s\n%s", url, resp.StatusCode, elapsed, body)
	return 0
}

// probeDuring tries every `every` until `during` has passed; 0 when any try was answered.
func probeDuring(url string, every, during time.Duration) int {
	rc := 1
	end := time.Now().Add(during)
	for time.Now().Before(end) {
		fmt.Printf("%s ", time.Now().UTC().Format("15:04:05.000"))
		if probe(url, min(timeout(), every)) == 0 {
			rc = 0
			fmt.Println()
		}
		time.Sleep(every)
	}
	return rc
}

func classify(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(err, &dns):
		return "dns-error"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, context.DeadlineExceeded), os.IsTimeout(err):
		return "timeout"
	case errors.As(err, &op):
		return "network-error"
	default:
		return "error"
	}
}
