package fence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Row is the fence of one key as the resource records it.
type Row struct {
	Key  string `json:"key"`
	Term int64  `json:"term"`
	// Owner holds the key since OwnerSince (first claim or transfer).
	Owner      string    `json:"owner"`
	OwnerSince time.Time `json:"owner_since"`
	// At is when Term was first recorded.
	At time.Time `json:"at"`
}

// Refusal is one recorded refused claim.
type Refusal struct {
	At    time.Time `json:"at"`
	Key   string    `json:"key"`
	Term  int64     `json:"term"`
	Owner string    `json:"owner"`
	Node  string    `json:"node"`
	// Code is CodeStaleTerm or CodeForeignOwner.
	Code string `json:"code"`
	// CurrentTerm and CurrentOwner are the fence's when it refused.
	CurrentTerm  int64  `json:"current_term"`
	CurrentOwner string `json:"current_owner"`
}

// Timestamps are read in UTC as RFC 3339, whatever the session's TimeZone
// and DateStyle.
const utcJSON = `to_char(%[1]s AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS %[1]s`

var (
	rowsSQL = `SELECT row_to_json(r)::text FROM (SELECT key, term, owner, ` +
		fmt.Sprintf(utcJSON, "owner_since") + `, ` + fmt.Sprintf(utcJSON, "at") +
		` FROM regent_fence.fence WHERE $1::text[] IS NULL OR key = ANY($1) ORDER BY key) r`
	refusalsSQL = `SELECT row_to_json(r)::text FROM (SELECT ` + fmt.Sprintf(utcJSON, "at") +
		`, key, term, owner, node, code, current_term, current_owner
		 FROM regent_fence.refusals WHERE at >= $1 ORDER BY id) r`
)

// Rows returns the fence rows of keys (nil: every key), ordered by key;
// keys without a row are left out. ErrNotInstalled when the schema is
// missing.
func Rows(ctx context.Context, conn *pgx.Conn, keys []string) ([]Row, error) {
	var arg any // NULL for nil keys
	if keys != nil {
		arg = keys
	}
	return query(ctx, conn, rowsSQL, arg, DecodeRow)
}

// Refusals returns the refusals recorded at or after since, oldest first.
// ErrNotInstalled when the schema is missing.
func Refusals(ctx context.Context, conn *pgx.Conn, since time.Time) ([]Refusal, error) {
	return query(ctx, conn, refusalsSQL, since, DecodeRefusal)
}

// query runs q with arg and decodes each row's JSON text.
func query[T any](ctx context.Context, conn *pgx.Conn, q string, arg any, decode func([]byte) (T, error)) ([]T, error) {
	rows, err := conn.Query(ctx, q, arg)
	if err != nil {
		return nil, readErr(err)
	}
	var out []T
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			rows.Close()
			return nil, readErr(err)
		}
		v, err := decode(b)
		if err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, readErr(err)
	}
	return out, nil
}

func readErr(err error) error {
	if isMissing(err) {
		return ErrNotInstalled
	}
	return fmt.Errorf("fence: read: %w", err)
}

// Transfer gives key to owner to on purpose, recorded with by (who asked)
// and the time. The term is reset to 0, so that the new owner's first
// claim passes at any term: terms of different deployments do not
// compare. A transfer to the current owner keeps the term. It waits for
// the open transactions that claimed the key; cancelling ctx gives up.
func Transfer(ctx context.Context, conn *pgx.Conn, key, to, by string) error {
	if key == "" || to == "" || by == "" {
		return fmt.Errorf("%w: transfer needs a key, a new owner and who asks", ErrInvalidToken)
	}
	if _, err := conn.Exec(ctx, `SELECT regent_fence.transfer($1, $2, $3)`, key, to, by); err != nil {
		if isMissing(err) {
			return ErrNotInstalled
		}
		return fmt.Errorf("fence: transfer of key %q to %q: %w", key, to, err)
	}
	return nil
}

// rowJSON has a pointer per field, so that a missing field is told from a
// zero one.
type rowJSON struct {
	Key        *string    `json:"key"`
	Term       *int64     `json:"term"`
	Owner      *string    `json:"owner"`
	OwnerSince *time.Time `json:"owner_since"`
	At         *time.Time `json:"at"`
}

// DecodeRow decodes and validates one Row from JSON (row_to_json of
// regent_fence.fence, or json.Marshal of a Row): every field present,
// non-empty key and owner, term >= 0. Unknown fields are ignored. The
// error wraps ErrInvalidRecord.
func DecodeRow(b []byte) (Row, error) {
	var j rowJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Row{}, fmt.Errorf("%w: fence row: %w", ErrInvalidRecord, err)
	}
	switch {
	case j.Key == nil || *j.Key == "":
		return Row{}, invalid("fence row", "key", "missing or empty")
	case j.Term == nil || *j.Term < 0:
		return Row{}, invalid("fence row", "term", "missing or negative")
	case j.Owner == nil || *j.Owner == "":
		return Row{}, invalid("fence row", "owner", "missing or empty")
	case j.OwnerSince == nil:
		return Row{}, invalid("fence row", "owner_since", "missing")
	case j.At == nil:
		return Row{}, invalid("fence row", "at", "missing")
	}
	return Row{Key: *j.Key, Term: *j.Term, Owner: *j.Owner, OwnerSince: *j.OwnerSince, At: *j.At}, nil
}

type refusalJSON struct {
	At           *time.Time `json:"at"`
	Key          *string    `json:"key"`
	Term         *int64     `json:"term"`
	Owner        *string    `json:"owner"`
	Node         *string    `json:"node"`
	Code         *string    `json:"code"`
	CurrentTerm  *int64     `json:"current_term"`
	CurrentOwner *string    `json:"current_owner"`
}

// DecodeRefusal decodes and validates one Refusal from JSON: at, key,
// term, owner, code, current_term and current_owner present; key, owner
// and current owner non-empty; terms >= 0; code RF001 or RF002; node may
// be empty or missing. The error wraps ErrInvalidRecord.
func DecodeRefusal(b []byte) (Refusal, error) {
	var j refusalJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return Refusal{}, fmt.Errorf("%w: refusal: %w", ErrInvalidRecord, err)
	}
	switch {
	case j.At == nil:
		return Refusal{}, invalid("refusal", "at", "missing")
	case j.Key == nil || *j.Key == "":
		return Refusal{}, invalid("refusal", "key", "missing or empty")
	case j.Term == nil || *j.Term < 0:
		return Refusal{}, invalid("refusal", "term", "missing or negative")
	case j.Owner == nil || *j.Owner == "":
		return Refusal{}, invalid("refusal", "owner", "missing or empty")
	case j.Code == nil || (*j.Code != CodeStaleTerm && *j.Code != CodeForeignOwner):
		return Refusal{}, invalid("refusal", "code", "not "+CodeStaleTerm+" or "+CodeForeignOwner)
	case j.CurrentTerm == nil || *j.CurrentTerm < 0:
		return Refusal{}, invalid("refusal", "current_term", "missing or negative")
	case j.CurrentOwner == nil || *j.CurrentOwner == "":
		return Refusal{}, invalid("refusal", "current_owner", "missing or empty")
	}
	r := Refusal{
		At: *j.At, Key: *j.Key, Term: *j.Term, Owner: *j.Owner, Code: *j.Code,
		CurrentTerm: *j.CurrentTerm, CurrentOwner: *j.CurrentOwner,
	}
	if j.Node != nil {
		r.Node = *j.Node
	}
	return r, nil
}

func invalid(what, field, problem string) error {
	return fmt.Errorf("%w: %s: %s %s", ErrInvalidRecord, what, field, problem)
}
