// yaml2json converts YAML documents to JSON exactly as kubectl does: the stream is split
// into documents by k8s.io/apimachinery's YAMLReader and each document is converted by
// sigs.k8s.io/yaml.YAMLToJSON (go-yaml v2's YAML 1.1 resolution). It prints one JSON
// line per document: {"json": ...} or {"error": "..."}. tests/e2e/yaml.rs compares
// drmesh's YAML reader with it.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	out := json.NewEncoder(os.Stdout)
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			_ = out.Encode(map[string]string{"error": err.Error()})
			return
		}
		converted, err := yaml.YAMLToJSON(doc)
		if err != nil {
			_ = out.Encode(map[string]string{"error": err.Error()})
			continue
		}
		if err := out.Encode(map[string]json.RawMessage{"json": converted}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
