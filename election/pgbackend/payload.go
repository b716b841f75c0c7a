package pgbackend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
)

// Payloads are opaque bytes to the backend. Each is stored twice: in
// payload_raw (bytea) exactly as given, and, when it is a JSON object that
// jsonb accepts, in payload (jsonb) so that operators can query it. Reads
// return the exact bytes when both columns agree, the jsonb text when
// someone changed only the jsonb column, and report a record whose jsonb
// column holds anything other than an object as corrupt.

// encodePayload returns the arguments for the payload (jsonb, as text or
// nil) and payload_raw (bytea) columns.
func encodePayload(p []byte) (jsonText any, raw []byte) {
	if p == nil {
		return nil, nil
	}
	if isJSONObject(p) && !bytes.Contains(p, []byte(`\u0000`)) {
		return string(p), p
	}
	return nil, p
}

func isJSONObject(p []byte) bool {
	t := bytes.TrimLeft(p, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(p)
}

// decodePayload rebuilds a payload from the jsonb type (jsonb_typeof), the
// jsonb text and the raw column, all possibly NULL.
func decodePayload(typ, text *string, raw []byte) ([]byte, error) {
	if typ == nil {
		return raw, nil
	}
	if *typ != "object" {
		return nil, fmt.Errorf("payload is a JSON %q, not an object", *typ)
	}
	if raw != nil && text != nil && sameJSON(raw, []byte(*text)) {
		return raw, nil
	}
	if text == nil {
		return nil, nil
	}
	return []byte(*text), nil
}

func sameJSON(a, b []byte) bool {
	var va, vb any
	da := json.NewDecoder(bytes.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(bytes.NewReader(b))
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	return reflect.DeepEqual(normalizeNumbers(va), normalizeNumbers(vb))
}

// normalizeNumbers compares numbers by value, since jsonb may rewrite
// their text (1e2 becomes 100).
func normalizeNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if f, err := t.Float64(); err == nil {
			return f
		}
		return t.String()
	case map[string]any:
		for k, e := range t {
			t[k] = normalizeNumbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = normalizeNumbers(e)
		}
	}
	return v
}
