package fence

import (
	"errors"
	"fmt"
)

// SQLSTATE codes raised by the regent_fence functions.
const (
	// CodeStaleTerm: the claim's term is older than the term the resource
	// already accepted for the key.
	CodeStaleTerm = "RF001"
	// CodeForeignOwner: the key belongs to another owner (checked before
	// the term).
	CodeForeignOwner = "RF002"
	// CodeNewerSchema: install found a schema written by a newer package.
	CodeNewerSchema = "RF003"
)

// Sentinel errors. errors.Is works on what Claim, ClaimSQL, Checker.Check
// and Install return.
var (
	ErrStaleTerm     = errors.New("fence: stale term")
	ErrForeignOwner  = errors.New("fence: foreign owner")
	ErrNotInstalled  = errors.New("fence: regent_fence schema not installed")
	ErrNewerSchema   = errors.New("fence: regent_fence schema is newer than this package")
	ErrInvalidToken  = errors.New("fence: invalid token")
	ErrInvalidRecord = errors.New("fence: invalid record")
)

// sqlStater is what PostgreSQL drivers' errors offer: *pgconn.PgError
// (pgx, and database/sql through pgx's stdlib), *pq.Error.
type sqlStater interface {
	SQLState() string
}

// sqlState returns the SQLSTATE of err's first error that has one, or "".
func sqlState(err error) string {
	var s sqlStater
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// RefusalError is what a claim refused by the resource returns. It wraps
// both the sentinel (ErrStaleTerm or ErrForeignOwner) and the driver's
// error (a *pgconn.PgError with pgx), so errors.Is and errors.As both work.
type RefusalError struct {
	// Code is CodeStaleTerm or CodeForeignOwner.
	Code string
	// Token is the refused claim.
	Token Token
	// Err is the driver's error; its message names the key, the terms or
	// the owners.
	Err error
	// RecordErr is set when recording the refusal failed (the refusal
	// itself stands).
	RecordErr error
}

func (e *RefusalError) Error() string {
	msg := e.Err.Error()
	if e.RecordErr != nil {
		msg += fmt.Sprintf(" (recording the refusal failed: %v)", e.RecordErr)
	}
	return msg
}

// Unwrap returns the sentinel, the driver's error and, when recording
// failed, that error.
func (e *RefusalError) Unwrap() []error {
	errs := []error{e.sentinel(), e.Err}
	if e.RecordErr != nil {
		errs = append(errs, e.RecordErr)
	}
	return errs
}

func (e *RefusalError) sentinel() error {
	if e.Code == CodeForeignOwner {
		return ErrForeignOwner
	}
	return ErrStaleTerm
}

// asRefusal returns a *RefusalError when err carries RF001 or RF002.
func asRefusal(t Token, err error) (*RefusalError, bool) {
	switch code := sqlState(err); code {
	case CodeStaleTerm, CodeForeignOwner:
		return &RefusalError{Code: code, Token: t, Err: err}, true
	}
	return nil, false
}
