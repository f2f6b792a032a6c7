package ffi

import "fmt"

// Error is a failed call of the C ABI: its status code (negative, as in
// cluster.h), the code's stable name (e.g. "CLUSTER_E_CONFIG") and the
// message naming the problem. errors.Is(err, kind) holds when err is an
// *Error of kind's code.
type Error struct {
	Code    int    // the status code, negative (CLUSTER_E_*)
	Name    string // the code's name, e.g. "CLUSTER_E_CONFIG"
	Message string // what went wrong, naming the field or peer
}

// Error formats the message and the name.
func (e *Error) Error() string {
	if e.Message == "" {
		return "cluster: " + e.Name
	}
	return fmt.Sprintf("cluster: %s (%s)", e.Message, e.Name)
}

// Is reports whether target is an *Error with the same status code, so
// errors.Is(err, ErrConfig) tells an error's kind whatever its message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// StatusOK is CLUSTER_OK, the status of a call that succeeded.
const StatusOK = 0

// The error kinds: one per CLUSTER_E_* status code of cluster.h, with its
// number and name written out here (not taken from the header through cgo)
// so that TestStatusTableMatchesHeader checks this table against the
// header's text. Calls that fail return an *Error of one of these codes
// with their own message; ErrTimeout and ErrClosed are also returned as
// they are.
var (
	ErrNullArg        = kind(-1, "CLUSTER_E_NULL_ARG", "a required argument was NULL")
	ErrInvalidArg     = kind(-2, "CLUSTER_E_INVALID_ARG", "an argument was out of its domain")
	ErrConfig         = kind(-3, "CLUSTER_E_CONFIG", "the configuration is invalid")
	ErrAddrInUse      = kind(-4, "CLUSTER_E_ADDR_IN_USE", "the address is already in use")
	ErrIO             = kind(-5, "CLUSTER_E_IO", "an operating-system I/O error")
	ErrUnknownPeer    = kind(-6, "CLUSTER_E_UNKNOWN_PEER", "the destination is not a member of the cluster")
	ErrTooLarge       = kind(-7, "CLUSTER_E_TOO_LARGE", "the payload is larger than MaxMessageSize")
	ErrTimeout        = kind(-8, "CLUSTER_E_TIMEOUT", "timed out")
	ErrClosed         = kind(-9, "CLUSTER_E_CLOSED", "the server is closed")
	ErrFull           = kind(-10, "CLUSTER_E_FULL", "a queue was full: the message was dropped")
	ErrPanic          = kind(-11, "CLUSTER_E_PANIC", "a bug in the library (a panic was caught)")
	ErrBufferTooSmall = kind(-12, "CLUSTER_E_BUFFER_TOO_SMALL", "a buffer was too small")
)

// Kinds is every error kind above, in the header's order.
var Kinds = []*Error{
	ErrNullArg, ErrInvalidArg, ErrConfig, ErrAddrInUse, ErrIO, ErrUnknownPeer,
	ErrTooLarge, ErrTimeout, ErrClosed, ErrFull, ErrPanic, ErrBufferTooSmall,
}

func kind(code int, name, message string) *Error {
	return &Error{Code: code, Name: name, Message: message}
}

// Statuses is the table of status codes by name: CLUSTER_OK and every
// kind's CLUSTER_E_* code.
func Statuses() map[string]int {
	m := map[string]int{"CLUSTER_OK": StatusOK}
	for _, k := range Kinds {
		m[k.Name] = k.Code
	}
	return m
}

// Errorf is an error of the given kind with a message of the wrapper's
// own, for failures Go finds before the library is called (e.g. a config
// file that cannot be read).
func Errorf(kind *Error, format string, args ...interface{}) *Error {
	return &Error{Code: kind.Code, Name: kind.Name, Message: fmt.Sprintf(format, args...)}
}
