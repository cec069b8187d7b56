package yggdrasil

// The wire codec of the data path: decoding what the cloud sends (data/in,
// control/in) and encoding the answers to data/out. The message types are
// in message.go.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// DecodeData decodes and validates a data/in payload. Every failure is a
// *DeliveryError whose MessageID and Directive are filled in as far as the
// payload allows, so that it can be answered.
func DecodeData(payload []byte) (*Data, error) {
	fail := func(code ErrorCode, format string, args ...any) (*Data, error) {
		id, directive := peekIDs(payload)
		return nil, &DeliveryError{Code: code, MessageID: id, Directive: directive, Err: fmt.Errorf(format, args...)}
	}
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		return fail(CodeMalformed, "empty payload")
	}
	if trimmed[0] != '{' {
		return fail(CodeMalformed, "payload is not a JSON object")
	}
	// encoding/json silently replaces invalid UTF-8 with U+FFFD: refuse it
	// instead, so that no byte of a message is changed on the way.
	if !utf8.Valid(payload) {
		return fail(CodeMalformed, "payload is not valid UTF-8")
	}
	var d Data
	if err := json.Unmarshal(payload, &d); err != nil {
		return fail(CodeMalformed, "decode data message: %v", err)
	}
	switch {
	case d.Type != TypeData:
		return fail(CodeMalformed, "type is %q, want %q", d.Type, TypeData)
	case d.Version != Version:
		return fail(CodeUnsupportedVersion, "version is %d, want %d", d.Version, Version)
	case d.MessageID == "":
		return fail(CodeMalformed, "message_id is empty")
	case d.Directive == "":
		return fail(CodeMalformed, "directive is empty")
	}
	return &d, nil
}

// peekIDs reads the top-level message_id and directive of a payload that
// does not decode as a Data message, so that the failure can still be
// answered to the right id. It only walks the top-level object and skips
// every other value without judging it, so a fault deep inside (nesting
// beyond any decoder's limit, a raw control character, a bad escape in
// another field) does not hide the ids. As encoding/json does, the last
// of duplicate keys wins.
func peekIDs(p []byte) (id, directive string) {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return "", ""
	}
	for i++; ; i++ { // i is at '{' or ',' here
		i = skipSpace(p, i)
		end := skipLoose(p, i)
		if end < 0 || p[i] != '"' {
			return id, directive
		}
		key := p[i:end]
		i = skipSpace(p, end)
		if i >= len(p) || p[i] != ':' {
			return id, directive
		}
		i = skipSpace(p, i+1)
		end = skipLoose(p, i)
		if end < 0 {
			return id, directive
		}
		// Keys match as encoding/json matches them: unescaped, then
		// exactly or else case-insensitively.
		var k, v string
		if json.Unmarshal(key, &k) == nil {
			if json.Unmarshal(p[i:end], &v) != nil {
				v = ""
			}
			switch {
			case strings.EqualFold(k, "message_id"):
				id = v
			case strings.EqualFold(k, "directive"):
				directive = v
			}
		}
		i = skipSpace(p, end)
		if i >= len(p) || p[i] != ',' {
			return id, directive
		}
	}
}

// skipLoose returns the index after the value that starts at p[i], or -1
// when it does not end. It only matches quotes and brackets: it checks
// nothing else, and has no depth limit (a counter, not recursion).
func skipLoose(p []byte, i int) int {
	if i >= len(p) {
		return -1
	}
	depth := 0
	for ; i < len(p); i++ {
		switch p[i] {
		case '"':
			for i++; i < len(p) && p[i] != '"'; i++ {
				if p[i] == '\\' {
					i++
				}
			}
			if i >= len(p) {
				return -1
			}
		case '{', '[':
			depth++
			continue
		case '}', ']':
			if depth == 0 {
				return i // the end of a scalar at the end of its container
			}
			depth--
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
			continue
		default:
			continue
		}
		if depth == 0 {
			return i + 1
		}
	}
	if depth == 0 {
		return len(p)
	}
	return -1
}

// DecodeCommand decodes a control/in payload. Like 0.1.x it does not insist
// on the type field; unlike 0.1.x it checks the version.
func DecodeCommand(payload []byte) (*Command, error) {
	if !utf8.Valid(payload) {
		return nil, fmt.Errorf("decode command: payload is not valid UTF-8")
	}
	var c Command
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	if c.Version != Version {
		return nil, fmt.Errorf("decode command: version is %d, want %d", c.Version, Version)
	}
	return &c, nil
}

// encodeAnswer encodes d as json.Marshal does, except that the content,
// already checked to be JSON, is copied as it is instead of being
// validated and compacted a second time: for a 64 KiB answer those two
// passes were a quarter of yggd's CPU. The envelope's fields come in the
// order of Data's.
func encodeAnswer(d *Data) ([]byte, error) {
	meta, err := json.Marshal(d.Metadata)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 160+len(d.MessageID)+len(d.ResponseTo)+len(d.Directive)+len(meta)+len(d.Content))
	b = append(b, `{"type":`...)
	b = appendString(b, d.Type)
	b = append(b, `,"message_id":`...)
	b = appendString(b, d.MessageID)
	b = append(b, `,"response_to":`...)
	b = appendString(b, d.ResponseTo)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, int64(d.Version), 10)
	b = append(b, `,"sent":"`...)
	b = d.Sent.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","directive":`...)
	b = appendString(b, d.Directive)
	b = append(b, `,"metadata":`...)
	b = append(b, meta...)
	b = append(b, `,"content":`...)
	b = append(b, d.Content...)
	return append(b, '}'), nil
}

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters and U+2028/U+2029 included; invalid UTF-8
// becomes U+FFFD).
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// The data path's JSON fast paths. encoding/json validates a whole
// payload before decoding it (checkValid) and scans a RawMessage again to
// copy it; with json.Valid on every answer, that was 43% of yggd's CPU at
// 64 KiB. The scanner below is strict RFC 8259, reads strings eight bytes
// at a time, and is only ever trusted when it says yes: anything it does
// not accept, or does not know, goes to encoding/json for the verdict
// (and, for data messages, for the exact error). So it changes the cost
// of the common case and nothing else.

// validJSON reports whether b is one JSON value, as json.Valid does.
func validJSON(b []byte) bool {
	if i := skipValue(b, skipSpace(b, 0), 0); i >= 0 && skipSpace(b, i) == len(b) {
		return true
	}
	return json.Valid(b)
}

// decodeDataFast decodes a data/in payload of the common shape: valid
// UTF-8, the envelope's keys spelled exactly and once each, strings
// without escapes, a valid message. Anything else returns false and is
// left to DecodeData, which then decides (and explains) exactly as before.
// The content aliases payload.
func decodeDataFast(p []byte) (*Data, bool) {
	if !utf8.Valid(p) {
		return nil, false
	}
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return nil, false
	}
	var d Data
	var seen uint
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return nil, false // no directive: DecodeData explains
	}
	for {
		key, j, ok := plainString(p, i)
		if !ok {
			return nil, false
		}
		i = skipSpace(p, j)
		if i >= len(p) || p[i] != ':' {
			return nil, false
		}
		i = skipSpace(p, i+1)
		var bit uint
		switch key {
		case "type":
			bit = 1 << 0
			d.Type, j, ok = plainString(p, i)
		case "message_id":
			bit = 1 << 1
			d.MessageID, j, ok = plainString(p, i)
		case "response_to":
			bit = 1 << 2
			d.ResponseTo, j, ok = plainString(p, i)
		case "directive":
			bit = 1 << 3
			d.Directive, j, ok = plainString(p, i)
		case "version":
			bit = 1 << 4
			d.Version, j, ok = smallInt(p, i)
		case "sent":
			bit = 1 << 5
			var s string
			if s, j, ok = plainString(p, i); ok && s != "" {
				ok = d.Sent.UnmarshalJSON(p[i:j]) == nil
			} else {
				ok = false
			}
		case "metadata":
			bit = 1 << 6
			d.Metadata, j, ok = plainMap(p, i)
		case "content":
			bit = 1 << 7
			j = skipValue(p, i, 0)
			ok = j >= 0
			if ok {
				d.Content = json.RawMessage(p[i:j:j])
			}
		default:
			return nil, false
		}
		if !ok || seen&bit != 0 {
			return nil, false
		}
		seen |= bit
		i = skipSpace(p, j)
		if i >= len(p) {
			return nil, false
		}
		if p[i] == '}' {
			break
		}
		if p[i] != ',' {
			return nil, false
		}
		i = skipSpace(p, i+1)
	}
	if skipSpace(p, i+1) != len(p) ||
		d.Type != TypeData || d.Version != Version || d.MessageID == "" || d.Directive == "" {
		return nil, false
	}
	return &d, true
}

// plainString reads the JSON string at p[i] if it has no escapes, and
// returns it and the index after it.
func plainString(p []byte, i int) (string, int, bool) {
	if i >= len(p) || p[i] != '"' {
		return "", 0, false
	}
	j := scanSafe(p, i+1)
	if j >= len(p) || p[j] != '"' {
		return "", 0, false
	}
	return string(p[i+1 : j]), j + 1, true
}

// plainMap reads null or an object of plain strings.
func plainMap(p []byte, i int) (map[string]string, int, bool) {
	if i+4 <= len(p) && string(p[i:i+4]) == "null" {
		return nil, i + 4, true
	}
	if i >= len(p) || p[i] != '{' {
		return nil, 0, false
	}
	m := map[string]string{}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return m, i + 1, true
	}
	for {
		k, j, ok := plainString(p, i)
		if !ok {
			return nil, 0, false
		}
		i = skipSpace(p, j)
		if i >= len(p) || p[i] != ':' {
			return nil, 0, false
		}
		v, j, ok := plainString(p, skipSpace(p, i+1))
		if !ok {
			return nil, 0, false
		}
		m[k] = v
		i = skipSpace(p, j)
		if i >= len(p) {
			return nil, 0, false
		}
		if p[i] == '}' {
			return m, i + 1, true
		}
		if p[i] != ',' {
			return nil, 0, false
		}
		i = skipSpace(p, i+1)
	}
}

// smallInt reads a non-negative JSON integer of up to nine digits that is
// not followed by a fraction or an exponent.
func smallInt(p []byte, i int) (int, int, bool) {
	n, start := 0, i
	for i < len(p) && p[i] >= '0' && p[i] <= '9' && i-start < 9 {
		n = n*10 + int(p[i]-'0')
		i++
	}
	if i == start || (p[start] == '0' && i-start > 1) || (i < len(p) && (p[i] == '.' || p[i] == 'e' || p[i] == 'E' || (p[i] >= '0' && p[i] <= '9'))) {
		return 0, 0, false
	}
	return n, i, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// maxScanDepth bounds the scanner's nesting; deeper values go to
// encoding/json.
const maxScanDepth = 200

// skipValue returns the index after the JSON value at b[i], or -1 when it
// is not valid (or is nested deeper than maxScanDepth).
func skipValue(b []byte, i, depth int) int {
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; c {
	case '"':
		return skipString(b, i)
	case '{', '[':
		if depth >= maxScanDepth {
			return -1
		}
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == end {
			return i + 1
		}
		for {
			if c == '{' {
				if i = skipString(b, i); i < 0 {
					return -1
				}
				if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
					return -1
				}
				i = skipSpace(b, i+1)
			}
			if i = skipValue(b, i, depth+1); i < 0 {
				return -1
			}
			if i = skipSpace(b, i); i >= len(b) {
				return -1
			}
			switch b[i] {
			case ',':
				i = skipSpace(b, i+1)
			case end:
				return i + 1
			default:
				return -1
			}
		}
	case 't':
		return literal(b, i, "true")
	case 'f':
		return literal(b, i, "false")
	case 'n':
		return literal(b, i, "null")
	}
	return skipNumber(b, i)
}

func literal(b []byte, i int, lit string) int {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

func skipNumber(b []byte, i int) int {
	digits := func(i int) (int, bool) {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i, i > start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i, _ = digits(i)
	default:
		return -1
	}
	var ok bool
	if i < len(b) && b[i] == '.' {
		if i, ok = digits(i + 1); !ok {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = digits(i); !ok {
			return -1
		}
	}
	return i
}

// skipString returns the index after the JSON string at b[i], or -1.
func skipString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	i++
	for {
		i = scanSafe(b, i)
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= len(b) {
				return -1
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return -1
				}
				for _, h := range b[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 6
			default:
				return -1
			}
		default:
			return -1 // a control character
		}
	}
}

// scanSafe returns the index of the first byte at or after i that is a
// quote, a backslash or a control character (len(b) if none), eight
// bytes at a time.
func scanSafe(b []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		q, s := x^(ones*'"'), x^(ones*'\\')
		if (x-ones*0x20)&^x&highs != 0 || (q-ones)&^q&highs != 0 || (s-ones)&^s&highs != 0 {
			break
		}
		i += 8
	}
	for i < len(b) {
		if c := b[i]; c < 0x20 || c == '"' || c == '\\' {
			return i
		}
		i++
	}
	return i
}
