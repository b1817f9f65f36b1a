import { describe, expect, it } from '@jest/globals';
import { generateKeyPairSync } from 'node:crypto';
import {
  decodePublicKey,
  encodePublicKey,
  generateX25519KeyPair,
  keyFingerprint,
  keyPairFromPem,
  open,
  privateKeyToPem,
  seal,
  SealedBoxError,
} from '../../../src/crypto/sealed-box.js';

const ctx = Buffer.from('node=a uid=1');

describe('sealed box (X25519 + HKDF-SHA256 + AES-256-GCM)', () => {
  it('round-trips for the recipient, with a fresh ephemeral key and nonce every time', () => {
    const r = generateX25519KeyPair();
    const msg = Buffer.from('{"auths":{"reg:5000":{"auth":"dTpw"}}}');
    const a = seal(msg, r.publicKey, ctx);
    const b = seal(msg, r.publicKey, ctx);
    expect(a.equals(b)).toBe(false);
    expect(a.includes(msg)).toBe(false);
    expect(open(a, r, ctx).equals(msg)).toBe(true);
    expect(open(b, r, ctx).equals(msg)).toBe(true);
    expect(open(seal(Buffer.alloc(0), r.publicKey, ctx), r, ctx)).toHaveLength(0);
  });

  it('refuses another key, another context, and any changed byte', () => {
    const r = generateX25519KeyPair();
    const other = generateX25519KeyPair();
    const sealed = seal(Buffer.from('secret'), r.publicKey, ctx);
    expect(() => open(sealed, other, ctx)).toThrow(SealedBoxError);
    expect(() => open(sealed, r, Buffer.from('node=b uid=1'))).toThrow(/authentication failed/);
    for (const i of [1, 40, sealed.length - 20, sealed.length - 1]) {
      const bad = Buffer.from(sealed);
      bad[i] = (bad[i] ?? 0) ^ 1;
      expect(() => open(bad, r, ctx)).toThrow(SealedBoxError);
    }
    const v2 = Buffer.from(sealed);
    v2[0] = 2;
    expect(() => open(v2, r, ctx)).toThrow(/unknown sealed-box version 2/);
    expect(() => open(sealed.subarray(0, 40), r, ctx)).toThrow(/too short/);
  });

  it('publishes a public key as 43 base64url characters with a stable 16-hex fingerprint', () => {
    const r = generateX25519KeyPair();
    const text = encodePublicKey(r.publicKey);
    expect(text).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const back = decodePublicKey(text);
    expect(encodePublicKey(back)).toBe(text);
    expect(keyFingerprint(back)).toBe(keyFingerprint(r.publicKey));
    expect(keyFingerprint(r.privateKey)).toBe(keyFingerprint(r.publicKey));
    expect(keyFingerprint(back)).toMatch(/^[0-9a-f]{16}$/);
    expect(keyFingerprint(generateX25519KeyPair().publicKey)).not.toBe(keyFingerprint(back));
    expect(() => decodePublicKey('short')).toThrow(/43 characters/);
    expect(() => decodePublicKey(`${text}=`)).toThrow(SealedBoxError);
  });

  it('keeps a private key as PKCS#8 PEM and refuses a key of another type', () => {
    const r = generateX25519KeyPair();
    const again = keyPairFromPem(privateKeyToPem(r.privateKey));
    expect(encodePublicKey(again.publicKey)).toBe(encodePublicKey(r.publicKey));
    expect(open(seal(Buffer.from('x'), r.publicKey, ctx), again, ctx).toString()).toBe('x');
    const ed = generateKeyPairSync('ed25519');
    expect(() =>
      keyPairFromPem(ed.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()),
    ).toThrow(/ed25519, not X25519/);
  });
});
