package testscript

import (
	"os"
	"strings"
	"testing"
)

// TestManual keeps the manual in doc.go in step with the commands: every
// command's usage line must appear there as it is.
func TestManual(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, usage := range Commands() {
		if !strings.Contains(string(doc), "//\t"+usage+"\n") && !strings.Contains(string(doc), "//\t"+usage+"      (!") {
			t.Errorf("doc.go does not document %q", usage)
		}
	}
}
