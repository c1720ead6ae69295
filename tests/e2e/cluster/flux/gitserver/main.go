// gitserver serves the git repositories under -root over HTTP on 127.0.0.1 (a random
// port), with Flux's own test git server (github.com/fluxcd/pkg/gittestserver, smart
// HTTP through the git CLI). A push creates a missing repository. It prints its base
// URL (http://127.0.0.1:PORT) on stdout and serves until SIGTERM or SIGINT.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/fluxcd/pkg/gittestserver"
)

func main() {
	root := flag.String("root", "", "directory holding the bare repositories")
	flag.Parse()
	if *root == "" {
		log.Fatal("-root is required")
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		log.Fatal(err)
	}
	srv := gittestserver.NewGitServer(*root).AutoCreate()
	if err := srv.StartHTTP(); err != nil {
		log.Fatal(err)
	}
	defer srv.StopHTTP()
	fmt.Println(srv.HTTPAddress())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
