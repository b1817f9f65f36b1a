// The words in command position of shell code (bash scripts, Makefile recipes): a curated
// extraction, not a shell parser. Single-quoted text, here-documents, comments, arithmetic and
// the text of double-quoted strings are dropped (command substitutions inside double quotes are
// kept); the code is split at separators, and in each simple command the first word after
// assignments and reserved words is the command. Words that are not plain names or absolute paths
// ($vars, relative paths) are left out, and so are the script's own functions and bash builtins.
// What remains may still hold a few non-commands (a `case` pattern, a `for` list); the caller
// keeps only names that are programs on this machine.

const KEYWORDS = new Set([
  'if',
  'then',
  'else',
  'elif',
  'fi',
  'do',
  'done',
  'while',
  'until',
  'case',
  'esac',
  'in',
  'function',
  'time',
  '!',
  '{',
  '}',
  // Prefixes that run the next word as the command.
  'exec',
  'command',
  'nohup',
]);

const BUILTINS = new Set(
  (
    'alias bg bind break builtin caller cd compgen complete continue declare dirs disown echo ' +
    'enable eval exit export false fc fg getopts hash help history jobs kill let local logout ' +
    'mapfile popd printf pushd pwd read readarray readonly return set shift shopt source suspend ' +
    'test times trap true type typeset ulimit umask unalias unset wait . : [ [['
  ).split(' '),
);

/** Removes here-document bodies (`<<EOF` … `EOF`, `<<-'EOF'` …) line by line. */
function dropHeredocs(text: string): string {
  const out: string[] = [];
  let ends: { word: string; tabs: boolean }[] = [];
  for (const line of text.split('\n')) {
    if (ends.length > 0) {
      const end = ends[0];
      if (end && (end.tabs ? line.replace(/^\t+/, '') : line) === end.word) ends = ends.slice(1);
      continue;
    }
    out.push(line);
    for (const m of line.matchAll(/<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/g)) {
      ends.push({ word: m[3] ?? '', tabs: m[1] === '-' });
    }
  }
  return out.join('\n');
}

/**
 * Removes `case` patterns (`in a | b)`, `;; *)`, and a line's leading `pat)` inside a case), so
 * neither their words nor their `)` are taken for code.
 */
function dropCasePatterns(text: string): string {
  let depth = 0;
  return text
    .split('\n')
    .map((line) => {
      let l = line
        .replace(/(\bcase\s+\S+\s+in)\s+[^()\n;]*\)(?=\s|;|$)/g, '$1\n')
        .replace(/;;\s*[^()\n;]*\)(?=\s|;|$)/g, ';;\n');
      if (depth > 0)
        l = l.replace(/^(\s*)\(?[^\s()=;|$"'`]+(\s*\|\s*[^\s()=;|$"'`]+)*\)(?=\s|;|$)/, '$1');
      if (/\bcase\s+\S+\s+in\b|\bcase\b.*\bin\s*$/.test(line)) depth += 1;
      if (/(^|;|\s)esac\b/.test(line)) depth = Math.max(0, depth - 1);
      return l;
    })
    .join('\n');
}

/**
 * The code with quoted text and comments dropped and every separator turned into a newline, so
 * each line starts a simple command.
 */
function commandLines(text: string): string {
  const src = dropCasePatterns(dropHeredocs(text.replace(/\\\n/g, ' ')));
  let out = '';
  // Contexts: 'code' (top level or inside $( )), 'dq' (inside double quotes).
  const stack: ('code' | 'dq')[] = ['code'];
  let i = 0;
  const at = (s: string): boolean => src.startsWith(s, i);
  while (i < src.length) {
    const ctx = stack[stack.length - 1];
    const c = src[i] ?? '';
    if (ctx === 'dq') {
      if (c === '\\') i += 2;
      else if (c === '"') {
        stack.pop();
        out += 'Q';
        i += 1;
      } else if (at('$((')) i = skipBalanced(src, i + 1, '(', ')');
      else if (at('$(')) {
        stack.push('code');
        out += '\n';
        i += 2;
      } else if (c === '`') {
        const end = src.indexOf('`', i + 1);
        out += `\n${src.slice(i + 1, end < 0 ? src.length : end)}\n`;
        i = end < 0 ? src.length : end + 1;
      } else i += 1;
      continue;
    }
    if (c === '\\') {
      out += src.slice(i, i + 2);
      i += 2;
    } else if (c === "'") {
      const end = src.indexOf("'", i + 1);
      out += 'Q';
      i = end < 0 ? src.length : end + 1;
    } else if (c === '"') {
      stack.push('dq');
      i += 1;
    } else if (c === '#' && (i === 0 || /\s|;/.test(src[i - 1] ?? ''))) {
      const end = src.indexOf('\n', i);
      i = end < 0 ? src.length : end;
    } else if (at('$((') || at('((')) {
      i = skipBalanced(src, at('$') ? i + 1 : i, '(', ')');
      out += 'Q';
    } else if (at('${')) {
      i = skipBalanced(src, i + 1, '{', '}');
      out += 'Q';
    } else if (at('$(') || at('<(') || at('>(')) {
      stack.push('code');
      out += '\n';
      i += 2;
    } else if (c === '=' && src[i + 1] === '(') {
      // an array assignment: its elements are data
      i = skipBalanced(src, i + 1, '(', ')');
      out += '=Q';
    } else if (c === ')') {
      if (stack.length > 1) stack.pop();
      out += '\n';
      i += 1;
    } else if (c === '`') {
      out += '\n';
      i += 1;
    } else if (at('&&') || at('||') || at(';;')) {
      out += '\n';
      i += 2;
    } else if (c === '(') {
      stack.push('code'); // a subshell or a function's ()
      out += '\n';
      i += 1;
    } else if (c === ';' || c === '|' || c === '&') {
      out += '\n';
      i += 1;
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}

/** Index just past the bracket that closes the one at `start` (nesting counted). */
function skipBalanced(src: string, start: number, open: string, close: string): number {
  let depth = 0;
  for (let i = start; i < src.length; i++) {
    if (src[i] === open) depth += 1;
    else if (src[i] === close) {
      depth -= 1;
      if (depth === 0) return i + 1;
    }
  }
  return src.length;
}

/** Names of the functions the script defines (`name() {` or `function name`). */
function functionNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)/gm)) {
    names.add(m[1] ?? '');
  }
  for (const m of text.matchAll(/^\s*function\s+([A-Za-z_][\w-]*)/gm)) names.add(m[1] ?? '');
  return names;
}

/** The commands a bash script runs: plain names (looked up in PATH) and absolute paths. */
export function shellCommands(text: string): string[] {
  const own = functionNames(text);
  const found = new Set<string>();
  for (const line of commandLines(text).split('\n')) {
    const words = line.trim().split(/\s+/).filter(Boolean);
    // `for x in a b c` / `case w in`: a list and a subject, not commands.
    if (words[0] === 'for' || words[0] === 'select' || words[0] === 'case') continue;
    let k = 0;
    while (k < words.length) {
      const w = words[k] ?? '';
      if (KEYWORDS.has(w) || /^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=/.test(w)) k += 1;
      else if (/^[0-9]*[<>]/.test(w))
        k += /^[0-9]*[<>]+&?$/.test(w) ? 2 : 1; // a redirection first
      else break;
    }
    const cmd = words[k];
    if (!cmd || BUILTINS.has(cmd) || own.has(cmd)) continue;
    if (/^[a-z][a-z0-9._+-]*$/.test(cmd) || /^\/[A-Za-z0-9._/+-]+$/.test(cmd)) found.add(cmd);
  }
  return [...found].sort();
}

/**
 * The recipe lines of a Makefile as one shell script: continuation lines joined, the `@`/`-`
 * prefixes dropped, `$(MAKE)` as `make`, `$$` as `$`, other make variables as opaque words.
 */
export function makefileRecipes(makefile: string): string {
  const joined = makefile.replace(/\\\n/g, ' ');
  const lines: string[] = [];
  for (const line of joined.split('\n')) {
    if (!line.startsWith('\t')) continue;
    const recipe = line
      .slice(1)
      .replace(/^[@-]+/, '')
      .replace(/\$\(MAKE\)/g, 'make')
      .replaceAll('$$', '\u0000')
      .replace(/\$\([^)]*\)|\$\{[^}]*\}/g, 'MAKEVAR')
      .replaceAll('\u0000', '$');
    lines.push(recipe);
  }
  return lines.join('\n');
}

/** A Makefile variable's value (`NAME := …` or `NAME = …`, continuation lines joined). */
export function makeVariable(makefile: string, name: string): string[] {
  const joined = makefile.replace(/\\\n/g, ' ');
  const m = new RegExp(`^${name}\\s*:?=(.*)$`, 'm').exec(joined);
  if (!m) throw new Error(`the Makefile sets no ${name}`);
  return (m[1] ?? '').trim().split(/\s+/).filter(Boolean);
}

/** The package names given literally to hack/setup.sh (the installer) in shell code. */
export function setupScriptPackages(text: string): string[] {
  const pkgs: string[] = [];
  for (const m of text.matchAll(/hack\/setup\.sh"?\s+([^\n;&|)]*)/g)) {
    for (const w of (m[1] ?? '').trim().split(/\s+/)) {
      if (/^[a-z0-9][a-z0-9.+-]+$/.test(w)) pkgs.push(w);
    }
  }
  return pkgs;
}
