package server_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mles/mles/server"
)

// TestServerHasNoEventLoopCallbacks: gnet's callbacks run on gnet's own
// goroutines under its ownership rules; *Server's methods are documented as
// safe for any caller, so none of them may be an event-loop callback.
func TestServerHasNoEventLoopCallbacks(t *testing.T) {
	typ := reflect.TypeFor[*server.Server]()
	for i := range typ.NumMethod() {
		if name := typ.Method(i).Name; strings.HasPrefix(name, "On") {
			t.Errorf("(*Server).%s is exported: event-loop callbacks belong to the unexported handler", name)
		}
	}
}
