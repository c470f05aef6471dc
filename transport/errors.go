package transport

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is: they are wrapped with the
// cause.
var (
	// ErrNotSent is returned by Client.Call when the request certainly did
	// not leave this process: the dial failed, the connection was already
	// broken, the request was too large, the context ended or the client was
	// closed before the request was written. Retrying is safe.
	ErrNotSent = errors.New("transport: request not sent")
	// ErrUnknown is returned by Client.Call when the request may have been
	// written before the connection failed, the context ended or the client
	// was closed: the server may or may not have handled it. Never retry a
	// write that failed with ErrUnknown blindly.
	ErrUnknown = errors.New("transport: request outcome unknown")
	// ErrClosed is returned for calls made on a closed Client or Mux, and
	// wrapped in the errors of calls that Close interrupted.
	ErrClosed = errors.New("transport: closed")
	// ErrFrameTooLarge reports a frame over the MaxFrameBytes limit.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrProtocol reports a malformed frame or an unexpected message.
	ErrProtocol = errors.New("transport: protocol error")
	// ErrNotReady, wrapped in an error returned by Config.Admit, refuses a
	// connection that a moment later would be admitted (the node is still
	// starting): the Mux logs it at Debug instead of Warn.
	ErrNotReady = errors.New("transport: not ready for this connection yet")
)

// CodeInternal is the RemoteError code carried by handler errors that are
// not a *RemoteError, by recovered handler panics, and by responses too
// large to send.
const CodeInternal uint16 = 0xFFFF

// RemoteError is an error returned by the remote Handler, as Client.Call
// returns it. A Handler that returns a *RemoteError (or an error wrapping
// one) controls the Code and Msg the caller sees; any other handler error
// arrives with Code CodeInternal and the error's text as Msg.
type RemoteError struct {
	// Code is an application-defined error code.
	Code uint16
	// Msg is the error message.
	Msg string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("transport: remote error %d: %s", e.Code, e.Msg)
}

// toRemoteError converts a handler error into what travels on the wire.
func toRemoteError(err error) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) && re != nil {
		return re
	}
	return &RemoteError{Code: CodeInternal, Msg: err.Error()}
}
