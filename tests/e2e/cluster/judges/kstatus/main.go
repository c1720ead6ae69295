// Command kstatus prints the kstatus health (Current, InProgress, Failed, ...) of each
// Kubernetes object read from stdin, as Flux and cli-utils compute it
// (sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute). Input: YAML (multi-document) or
// JSON objects, Lists are expanded. Output: one line per object,
// "<kind>/<name> <status> <message>"; with -json, one JSON object per line.
// Exit code: 0 when every object was computed, 1 on unreadable input or a compute error.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	asJSON := flag.Bool("json", false, "print one JSON object per line")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer, asJSON bool) error {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(in), 4096)
	w := bufio.NewWriter(out)
	defer w.Flush()
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("decode: %w", err)
		}
		if len(raw) == 0 || string(raw) == "null" {
			continue // empty YAML document
		}
		// The unstructured JSON scheme keeps integers as int64, as kstatus expects.
		decoded, err := runtime.Decode(unstructured.UnstructuredJSONScheme, raw)
		if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		var objects []*unstructured.Unstructured
		switch o := decoded.(type) {
		case *unstructured.Unstructured:
			objects = append(objects, o)
		case *unstructured.UnstructuredList:
			for i := range o.Items {
				objects = append(objects, &o.Items[i])
			}
		default:
			return fmt.Errorf("unexpected object %T", decoded)
		}
		for _, obj := range objects {
			res, err := status.Compute(obj)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", obj.GetKind(), obj.GetName(), err)
			}
			r := result{Kind: obj.GetKind(), Name: obj.GetName(), Status: res.Status.String(), Message: res.Message}
			if asJSON {
				b, _ := json.Marshal(r)
				fmt.Fprintln(w, string(b))
			} else {
				fmt.Fprintf(w, "%s/%s %s %s\n", r.Kind, r.Name, r.Status, r.Message)
			}
		}
	}
}
