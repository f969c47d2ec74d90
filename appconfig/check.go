package appconfig

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// positions maps dotted keys ("database.engine", "app.paths[1]") to the line where
// they are written.
type positions map[string]int

// line returns the line of key or of its nearest written parent, or 0.
func (p positions) line(key string) int {
	for key != "" {
		if l, ok := p[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

var configType = reflect.TypeFor[Config]()

// checker walks the TOML syntax tree against the Config struct, recording where each
// key is written and reporting unknown keys, wrong value types and duplicates. It does
// this itself rather than through go-toml's strict mode so that keys inside inline
// tables get their full path and every message has a line.
type checker struct {
	p       unstable.Parser
	file    string
	pos     positions
	defined map[string]int
	errs    []*Error
}

// check returns the key positions of data, or the errors found.
func check(data []byte, file string) (positions, error) {
	c := &checker{file: file, pos: positions{}, defined: map[string]int{}}
	c.p.Reset(data)

	// The current [table] path and its struct type; the type is nil inside an unknown
	// or invalid table. An unknown table is reported through its keys, or by itself
	// when it has none.
	table, tableType := []string(nil), configType
	var unknown struct {
		key        string
		line, keys int
	}
	flushUnknown := func() {
		if unknown.key != "" && unknown.keys == 0 {
			c.unknownKey(unknown.key, unknown.line)
		}
		unknown.key = ""
	}

	for c.p.NextExpression() {
		e := c.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			flushUnknown()
			parts, line := c.keyParts(e.Key())
			key := join("", parts)
			table, tableType = parts, nil
			t, bad := c.resolve(configType, "", parts, line)
			if bad {
				continue
			}
			if t == nil {
				unknown.key, unknown.line, unknown.keys = key, line, 0
				continue
			}
			if !isTable(t) {
				c.errorf(line, key, "expected %s, got a table", typeName(t))
				continue
			}
			if e.Kind == unstable.ArrayTable {
				c.errorf(line, key, "expected a table, got an array of tables ([[%s]]); use [%s]", key, key)
				continue
			}
			if first, dup := c.defined[key]; dup {
				c.errorf(line, key, "table defined twice (first on line %d)", first)
				continue
			}
			c.defined[key] = line
			c.pos[key] = line
			tableType = deref(t)
		case unstable.KeyValue:
			if tableType == nil {
				if unknown.key != "" {
					unknown.keys++
					parts, line := c.keyParts(e.Key())
					c.unknownKey(join(unknown.key, parts), line)
				}
				continue
			}
			c.keyValue(join("", table), tableType, e)
		}
	}
	flushUnknown()
	if err := c.p.Error(); err != nil {
		return nil, syntaxError(data, file, err)
	}
	if len(c.errs) > 0 {
		return nil, joinErrors(c.errs)
	}
	return c.pos, nil
}

// keyValue checks one key = value pair inside the table at prefix of type t.
func (c *checker) keyValue(prefix string, t reflect.Type, kv *unstable.Node) {
	parts, line := c.keyParts(kv.Key())
	ft, bad := c.resolve(t, prefix, parts, line)
	key := join(prefix, parts)
	if bad {
		return
	}
	if ft == nil {
		c.unknownKey(key, line)
		return
	}
	if first, dup := c.defined[key]; dup {
		c.errorf(line, key, "key set twice (first on line %d)", first)
		return
	}
	c.defined[key] = line
	c.pos[key] = line
	c.value(key, ft, kv.Value(), line)
}

// value checks that node fits the Go type t.
func (c *checker) value(key string, t reflect.Type, n *unstable.Node, line int) {
	t = deref(t)
	if l := c.nodeLine(n); l > 0 {
		line = l
		c.pos[key] = l
	}
	var want unstable.Kind
	switch t.Kind() {
	case reflect.String:
		want = unstable.String
	case reflect.Int, reflect.Int64:
		want = unstable.Integer
	case reflect.Bool:
		want = unstable.Bool
	case reflect.Slice:
		want = unstable.Array
	case reflect.Struct:
		want = unstable.InlineTable
	default:
		panic(fmt.Sprintf("appconfig: unsupported field type %s", t))
	}
	if n.Kind != want {
		c.errorf(line, key, "expected %s, got %s", typeName(t), kindName(n.Kind))
		return
	}
	switch n.Kind {
	case unstable.Array:
		it := n.Children()
		for i := 0; it.Next(); i++ {
			ek := fmt.Sprintf("%s[%d]", key, i)
			c.pos[ek] = line
			c.value(ek, t.Elem(), it.Node(), line)
		}
	case unstable.InlineTable:
		c.defined[key] = line
		it := n.Children()
		for it.Next() {
			if it.Node().Kind == unstable.KeyValue {
				c.keyValue(key, t, it.Node())
			}
		}
	}
}

// resolve follows parts from the struct type t. It returns the type of the last part,
// nil if a part is unknown, or bad=true after reporting a non-table in the middle.
func (c *checker) resolve(t reflect.Type, prefix string, parts []string, line int) (ft reflect.Type, bad bool) {
	cur := deref(t)
	for i, part := range parts {
		f, ok := fieldType(cur, part)
		if !ok {
			return nil, false
		}
		if i == len(parts)-1 {
			return f, false
		}
		if !isTable(f) {
			c.errorf(line, join(prefix, parts[:i+1]), "expected %s, got a table", typeName(f))
			return nil, true
		}
		if k := join(prefix, parts[:i+1]); c.pos[k] == 0 {
			c.pos[k] = line
		}
		cur = deref(f)
	}
	return cur, false
}

func (c *checker) keyParts(it unstable.Iterator) ([]string, int) {
	var parts []string
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = c.nodeLine(n)
		}
		parts = append(parts, string(n.Data))
	}
	return parts, line
}

func (c *checker) nodeLine(n *unstable.Node) int {
	if n.Raw.Length == 0 {
		return 0
	}
	return c.p.Shape(n.Raw).Start.Line
}

func (c *checker) errorf(line int, key, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) unknownKey(key string, line int) {
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Key: key, Msg: fmt.Sprintf("unknown key %q", key), unknown: true})
}

// decode unmarshals data, which check has accepted, into a Config.
func decode(data []byte, file string) (*Config, error) {
	var cfg Config
	if err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg); err != nil {
		return nil, syntaxError(data, file, err)
	}
	return &cfg, nil
}

// syntaxError turns a go-toml error into an *Error with a line.
func syntaxError(data []byte, file string, err error) error {
	var de *toml.DecodeError
	if !errors.As(err, &de) {
		// Parser errors carry no position; decoding again yields a DecodeError.
		derr := toml.Unmarshal(data, &map[string]any{})
		if !errors.As(derr, &de) {
			return &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
		}
	}
	line, _ := de.Position()
	return &Error{File: file, Line: line, Key: join("", de.Key()), Msg: strings.TrimPrefix(de.Error(), "toml: ")}
}

// joinErrors sorts errs by line and returns the single error or their errors.Join.
func joinErrors(errs []*Error) error {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

func join(prefix string, parts []string) string {
	s := strings.Join(parts, ".")
	if prefix == "" {
		return s
	}
	if s == "" {
		return prefix
	}
	return prefix + "." + s
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func isTable(t reflect.Type) bool {
	return deref(t).Kind() == reflect.Struct
}

// fieldType returns the type of the field of struct t whose toml tag is name.
func fieldType(t reflect.Type, name string) (reflect.Type, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag != "" && tag != "-" && tag == name {
			return f.Type, true
		}
	}
	return nil, false
}

func typeName(t reflect.Type) string {
	t = deref(t)
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Struct:
		return "a table"
	}
	return t.String()
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "an integer"
	case unstable.Float:
		return "a float"
	case unstable.Bool:
		return "a boolean"
	case unstable.Array:
		return "an array"
	case unstable.InlineTable, unstable.Table:
		return "a table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "a date/time"
	}
	return k.String()
}
