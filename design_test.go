package raft

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docs/design.md names code so a reader can find it. These tests keep it
// honest as the code changes: every name it gives must exist, and the
// channel table must say what NewNode makes.

const designDoc = "docs/design.md"

func TestDesignDocNamesExist(t *testing.T) {
	doc := readDesignDoc(t)
	names := declaredNames(t)
	prose, diagrams := splitMarkdown(doc)

	var missing []string
	check := func(where, name string) {
		if !nameExists(name, names) {
			missing = append(missing, where+": "+name)
		}
	}
	for _, span := range backquoted.FindAllStringSubmatch(prose, -1) {
		check("`"+span[1]+"`", span[1])
	}
	for _, d := range diagrams {
		for _, tok := range codeToken.FindAllString(d, -1) {
			if looksLikeCode(tok) {
				check("diagram", tok)
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("%s names things the code no longer has (rename them there, or bring them back):\n  %s",
			designDoc, strings.Join(missing, "\n  "))
	}
}

func TestDesignDocChannelTableIsWhatNewNodeMakes(t *testing.T) {
	doc := readDesignDoc(t)
	made := channelsMadeByNewNode(t)
	documented := map[string]string{}
	for _, row := range channelRow.FindAllStringSubmatch(doc, -1) {
		for _, name := range backquoted.FindAllStringSubmatch(row[1], -1) {
			documented[name[1]] = strings.Trim(strings.TrimSpace(row[2]), "`")
		}
	}
	for name, size := range made {
		got, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("NewNode makes channel %s (capacity %s), which the channel table of %s does not list", name, size, designDoc)
		case got != size:
			t.Errorf("%s says %s has capacity %s; NewNode makes it with %s", designDoc, name, got, size)
		}
	}
	for name := range documented {
		if _, ok := made[name]; !ok {
			t.Errorf("%s's channel table lists %s, which NewNode does not make", designDoc, name)
		}
	}
}

var (
	backquoted = regexp.MustCompile("`([^`\n]+)`")
	// codeToken is a Go name, maybe qualified (Type.Method), maybe called.
	codeToken  = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?`)
	identPath  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?:\(\))?$`)
	channelRow = regexp.MustCompile("(?m)^\\| (`[^|]+) \\| ([^|]+) \\| [^|]+ → [^|]+ \\|")
	camelCase  = regexp.MustCompile(`[a-z][A-Z]`)
)

func readDesignDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(designDoc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// splitMarkdown returns the text outside fenced blocks, and each fenced
// block's text.
func splitMarkdown(doc string) (prose string, blocks []string) {
	var p, b strings.Builder
	in := false
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(line, "```") {
			if in {
				blocks = append(blocks, b.String())
				b.Reset()
			}
			in = !in
			continue
		}
		if in {
			b.WriteString(line)
		} else {
			p.WriteString(line)
		}
	}
	return p.String(), blocks
}

// looksLikeCode tells the diagram's code names from its English: a name
// that is capitalized, camelCase or qualified is code.
func looksLikeCode(tok string) bool {
	return tok[0] >= 'A' && tok[0] <= 'Z' || camelCase.MatchString(tok) || strings.Contains(tok, ".")
}

// nameExists checks one backquoted span or diagram token. Paths ending in
// .go or / must exist (relative to the repository's root); Go names,
// plain or qualified (Type.Member, package.Name), must be declared
// somewhere in the repository. Anything else (a command line, an
// expression) is prose and not checked.
func nameExists(s string, names map[string]bool) bool {
	switch {
	case strings.HasSuffix(s, ".go") || strings.HasSuffix(s, "/"):
		_, err := os.Stat(s)
		return err == nil
	case identPath.MatchString(s):
		return names[strings.TrimSuffix(s, "()")]
	}
	return true
}

// declaredNames returns every name declared in the repository's Go files:
// top-level names (also as package.Name), methods, struct fields and
// interface methods (also as Type.Name).
func declaredNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		addNames(names, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func addNames(names map[string]bool, f *ast.File) {
	pkg := f.Name.Name
	add := func(name string) {
		names[name] = true
		names[pkg+"."+name] = true
	}
	for _, decl := range f.Decls {
		switch d := decl.(type) {
		case *ast.FuncDecl:
			names[d.Name.Name] = true
			if d.Recv == nil {
				add(d.Name.Name)
				continue
			}
			recv := d.Recv.List[0].Type
			if star, ok := recv.(*ast.StarExpr); ok {
				recv = star.X
			}
			if id, ok := recv.(*ast.Ident); ok {
				names[id.Name+"."+d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, spec := range d.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					add(s.Name.Name)
					addMembers(names, s.Name.Name, s.Type)
				case *ast.ValueSpec:
					for _, n := range s.Names {
						add(n.Name)
					}
				}
			}
		}
	}
}

// addMembers adds a struct's fields or an interface's methods.
func addMembers(names map[string]bool, typ string, expr ast.Expr) {
	var fields *ast.FieldList
	switch e := expr.(type) {
	case *ast.StructType:
		fields = e.Fields
	case *ast.InterfaceType:
		fields = e.Methods
	default:
		return
	}
	for _, field := range fields.List {
		for _, n := range field.Names {
			names[n.Name] = true
			names[typ+"."+n.Name] = true
		}
	}
}

// channelsMadeByNewNode returns each Node field NewNode initializes with
// make(chan T, size), and the size as written: a number, the last part of
// a field selector (cfg.MaxProposalBatch → MaxProposalBatch), or 0.
func channelsMadeByNewNode(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "raft.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	made := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		if id, ok := lit.Type.(*ast.Ident); !ok || id.Name != "Node" {
			return true
		}
		for _, elt := range lit.Elts {
			kv, ok := elt.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			call, ok := kv.Value.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				continue
			}
			if fn, ok := call.Fun.(*ast.Ident); !ok || fn.Name != "make" {
				continue
			}
			if _, ok := call.Args[0].(*ast.ChanType); !ok {
				continue
			}
			size := "0"
			if len(call.Args) > 1 {
				switch a := call.Args[1].(type) {
				case *ast.BasicLit:
					size = a.Value
				case *ast.SelectorExpr:
					size = a.Sel.Name
				default:
					t.Fatalf("raft.go: channel %s has a size this test cannot read", kv.Key)
				}
			}
			made[kv.Key.(*ast.Ident).Name] = size
		}
		return false
	})
	if len(made) == 0 {
		t.Fatal("raft.go: found no channels made in a Node literal; has NewNode moved?")
	}
	return made
}
