// HPACK (RFC 7541), as much as rewriting a client's request headers needs: a decoder that keeps
// the client's dynamic table in step (Huffman strings included), and an encoder that writes only
// literals without indexing, so the decoder on the other side never holds a table of ours.
export type HeaderField = [name: string, value: string];

// Appendix A: the static table, index 1..61.
const STATIC_TABLE: readonly HeaderField[] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

// Appendix B's code is canonical: it follows from each symbol's code length alone. Lengths of
// symbols 0..255, one letter each ('a' = 5 bits … 'z' = 30 bits); EOS (256) is 30 bits.
const HUFFMAN_LENGTHS =
  'isxxxxxxxtzxxzxxxxxxxxzxxxxxxxxxbffhibdgffdgdbbbaaabbbbbbbcdkbhfibcccccccccccccccccccccc' +
  'dcdioijbkabababbbaccbbbabcbaabccccckgjixprpprrrsrssssststtrstssssqrsrsstrqprrssqsrrtqrss' +
  'qqrqsrssprrrsrrsvvporsruvvvwwvtuoqvwwvwtqqvvxwwwptpqrqqsrruuttvsvwvvwwwwwxwwwwwv';
const EOS = 256;

interface HuffmanTable {
  /** Per code length: the first code of that length, how many there are, where they start. */
  first: number[];
  count: number[];
  offset: number[];
  /** Symbols in canonical order (by length, then value). */
  symbols: number[];
}

function buildHuffmanTable(): HuffmanTable {
  const lengths = [...HUFFMAN_LENGTHS].map((c) => c.charCodeAt(0) - 'a'.charCodeAt(0) + 5);
  lengths.push(30);
  const symbols = lengths.map((_, s) => s).sort((a, b) => lengths[a]! - lengths[b]! || a - b);
  const first: number[] = [];
  const count: number[] = [];
  const offset: number[] = [];
  let code = 0;
  let at = 0;
  for (let len = 1; len <= 30; len++) {
    const n = lengths.filter((l) => l === len).length;
    first[len] = code;
    count[len] = n;
    offset[len] = at;
    at += n;
    code = (code + n) << 1;
  }
  return { first, count, offset, symbols };
}

const HUFFMAN = buildHuffmanTable();

export class HpackError extends Error {}

/** Decodes a Huffman-coded string (RFC 7541 5.2): padding is at most 7 bits, all ones. */
export function huffmanDecode(buf: Buffer): Buffer {
  const out: number[] = [];
  let code = 0;
  let len = 0;
  for (const byte of buf) {
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      const i = code - HUFFMAN.first[len]!;
      if (i >= 0 && i < HUFFMAN.count[len]!) {
        const sym = HUFFMAN.symbols[HUFFMAN.offset[len]! + i]!;
        if (sym === EOS) throw new HpackError('Huffman string contains EOS');
        out.push(sym);
        code = 0;
        len = 0;
      } else if (len >= 30) {
        throw new HpackError('invalid Huffman code');
      }
    }
  }
  if (len > 7 || code !== (1 << len) - 1) throw new HpackError('invalid Huffman padding');
  return Buffer.from(out);
}

/** Reads an integer with an N-bit prefix (5.1) at `pos`; returns it and the next position. */
function readInt(buf: Buffer, pos: number, prefixBits: number): [number, number] {
  if (pos >= buf.length) throw new HpackError('truncated integer');
  const max = (1 << prefixBits) - 1;
  let value = buf[pos]! & max;
  pos++;
  if (value < max) return [value, pos];
  for (let shift = 0; ; shift += 7) {
    if (pos >= buf.length) throw new HpackError('truncated integer');
    if (shift > 28) throw new HpackError('integer too large');
    const b = buf[pos++]!;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [value, pos];
  }
}

function readString(buf: Buffer, pos: number): [string, number] {
  if (pos >= buf.length) throw new HpackError('truncated string');
  const huffman = (buf[pos]! & 0x80) !== 0;
  const [len, start] = readInt(buf, pos, 7);
  const end = start + len;
  if (end > buf.length) throw new HpackError('truncated string');
  const raw = buf.subarray(start, end);
  return [(huffman ? huffmanDecode(raw) : raw).toString('latin1'), end];
}

const entrySize = ([n, v]: HeaderField): number =>
  Buffer.byteLength(n, 'latin1') + Buffer.byteLength(v, 'latin1') + 32;

/** One direction's decoding context (4.): the dynamic table, newest entry first. */
export class HpackDecoder {
  private readonly table: HeaderField[] = [];
  private size = 0;
  private maxSize: number;

  /** `limit`: the SETTINGS_HEADER_TABLE_SIZE the receiving side advertised (4096 unless set). */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit;
  }

  /** Decodes one complete header block. */
  decode(block: Buffer): HeaderField[] {
    const fields: HeaderField[] = [];
    let pos = 0;
    while (pos < block.length) {
      const b = block[pos]!;
      if (b & 0x80) {
        // 6.1 indexed field
        const [index, next] = readInt(block, pos, 7);
        fields.push(this.lookup(index));
        pos = next;
      } else if ((b & 0xe0) === 0x20) {
        // 6.3 dynamic table size update
        const [size, next] = readInt(block, pos, 5);
        if (size > this.limit) throw new HpackError(`table size ${size} over ${this.limit}`);
        this.maxSize = size;
        this.evict(0);
        pos = next;
      } else {
        // 6.2.1 incremental indexing (01xxxxxx), 6.2.2 without (0000xxxx), 6.2.3 never (0001xxxx)
        const indexing = (b & 0xc0) === 0x40;
        const [index, afterIndex] = readInt(block, pos, indexing ? 6 : 4);
        let name: string;
        pos = afterIndex;
        if (index === 0) [name, pos] = readString(block, pos);
        else name = this.lookup(index)[0];
        let value: string;
        [value, pos] = readString(block, pos);
        fields.push([name, value]);
        if (indexing) this.add([name, value]);
      }
    }
    return fields;
  }

  private lookup(index: number): HeaderField {
    if (index >= 1 && index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1]!;
    const e = this.table[index - STATIC_TABLE.length - 1];
    if (!e) throw new HpackError(`header index ${index} is not in the table`);
    return e;
  }

  private add(field: HeaderField): void {
    const size = entrySize(field);
    this.evict(size);
    // 4.4: an entry larger than the table empties it and is not added.
    if (size > this.maxSize) return;
    this.table.unshift(field);
    this.size += size;
  }

  /** Evicts the oldest entries until `room` more octets fit. */
  private evict(room: number): void {
    while (this.table.length > 0 && this.size + room > this.maxSize) {
      this.size -= entrySize(this.table.pop()!);
    }
  }
}

function writeInt(out: number[], value: number, prefixBits: number, firstByte: number): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  let rest = value - max;
  while (rest >= 0x80) {
    out.push((rest % 0x80) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

/** Encodes fields as literals without indexing, new name, plain strings (6.2.2). */
export function encodeLiterals(fields: readonly HeaderField[]): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    out.push(0x00);
    for (const s of [name, value]) {
      const bytes = Buffer.from(s, 'latin1');
      writeInt(out, bytes.length, 7, 0x00);
      for (const b of bytes) out.push(b);
    }
  }
  return Buffer.from(out);
}
