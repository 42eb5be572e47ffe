// Command oracle fills in tests/agreement.json with what cbroglie/mustache 1.4.0 renders, the
// way the seed's mustache CLI does it: the data through gopkg.in/yaml.v2, then the template
// parsed and rendered with the library's defaults (AllowMissingVariables = true).
//
// It is not built by the tests (the library is not available offline); docs/buildernet.md says
// how to run it. It reads the file named by its argument, keeps each case's name, template and
// data, sets "output" or "error", and writes the file back.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/cbroglie/mustache"
	"gopkg.in/yaml.v2"
)

type testCase struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Data     json.RawMessage `json:"data"`
	Output   *string         `json:"output,omitempty"`
	Error    *bool           `json:"error,omitempty"`
}

func main() {
	path := os.Args[1]
	raw, err := os.ReadFile(path)
	if err != nil {
		panic(err)
	}
	var cases []testCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		panic(err)
	}
	for i := range cases {
		c := &cases[i]
		c.Output, c.Error = nil, nil
		// The seed hands the CLI jq's compact JSON.
		var compact bytes.Buffer
		if err := json.Compact(&compact, c.Data); err != nil {
			panic(fmt.Sprintf("%s: %v", c.Name, err))
		}
		var data interface{}
		if err := yaml.Unmarshal(compact.Bytes(), &data); err != nil {
			panic(fmt.Sprintf("%s: yaml: %v", c.Name, err))
		}
		tmpl, err := mustache.ParseString(c.Template)
		if err == nil {
			var out string
			out, err = tmpl.Render(data)
			if err == nil {
				c.Output = &out
			}
		}
		if err != nil {
			yes := true
			c.Error = &yes
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cases); err != nil {
		panic(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		panic(err)
	}
}
