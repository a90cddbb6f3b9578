package tlsbridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadTicketKeys: keys in order, comments and blank lines skipped;
// a short, long or non-hex key, an empty file and too many keys are errors
// that name the line.
func TestLoadTicketKeys(t *testing.T) {
	k1, k2 := strings.Repeat("ab", 32), strings.Repeat("01", 32)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys, err := LoadTicketKeys(write("ok", "# current first\n"+k1+"\n\n  "+k2+"  \n"))
	if err != nil || len(keys) != 2 || keys[0][0] != 0xab || keys[1][31] != 0x01 {
		t.Fatalf("LoadTicketKeys = %x, %v", keys, err)
	}
	for name, body := range map[string]string{
		"short":   k1[:62] + "\n",
		"long":    k1 + "00\n",
		"not hex": strings.Repeat("zz", 32) + "\n",
		"empty":   "# nothing\n",
		"many":    strings.Repeat(k1+"\n", maxTicketKeys+1),
	} {
		if _, err := LoadTicketKeys(write(name, body)); err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "empty" && name != "many" && !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%s: %v does not name the line", name, err)
		}
	}
	if _, err := LoadTicketKeys(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file: no error")
	}
}
