// Public-key sealing for one recipient: an ephemeral X25519 key agreement with the recipient's
// key, HKDF-SHA256 to an AES-256-GCM key, and associated data that binds the ciphertext to its
// context (who it is for, what it is about), so it cannot be replayed elsewhere. Only the holder
// of the recipient's private key opens it; a wrong key, a changed byte or another context is
// refused by the AEAD.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';

const VERSION = 1;
const INFO = Buffer.from('kata.sandbox.io sealed-box v1 X25519-HKDF-SHA256-AES-256-GCM');
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** version || ephemeral public key || nonce || ciphertext || tag */
const HEADER_BYTES = 1 + KEY_BYTES + NONCE_BYTES;

export class SealedBoxError extends Error {
  override readonly name = 'SealedBoxError';
}

export interface X25519KeyPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
}

export function generateX25519KeyPair(): X25519KeyPair {
  return generateKeyPairSync('x25519');
}

/** The raw 32 bytes of an X25519 public key. */
export function rawPublicKey(key: KeyObject): Buffer {
  if (key.asymmetricKeyType !== 'x25519') throw new SealedBoxError('not an X25519 key');
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  return Buffer.from(jwk.x ?? '', 'base64url');
}

/** A public key as published (base64url of its raw bytes). */
export function encodePublicKey(key: KeyObject): string {
  return rawPublicKey(key).toString('base64url');
}

/** A published public key back to a key object; refuses anything but 32 bytes of base64url. */
export function decodePublicKey(text: string): KeyObject {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) {
    throw new SealedBoxError('a public key is 43 characters of base64url (32 bytes)');
  }
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: text }, format: 'jwk' });
}

/** A short name of a public key: the first 16 hex digits of SHA-256 over its raw bytes. */
export function keyFingerprint(key: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(key)).digest('hex').slice(0, 16);
}

export function privateKeyToPem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** A PKCS#8 PEM X25519 private key and its public half. */
export function keyPairFromPem(pem: string): X25519KeyPair {
  const privateKey = createPrivateKey({ key: pem, format: 'pem' });
  if (privateKey.asymmetricKeyType !== 'x25519') {
    throw new SealedBoxError(`the key is ${privateKey.asymmetricKeyType ?? 'unknown'}, not X25519`);
  }
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

function aeadKey(shared: Buffer, ephemeral: Buffer, recipient: Buffer): Buffer {
  // Both public keys in the salt: the key is bound to this exact exchange.
  const salt = Buffer.concat([ephemeral, recipient]);
  return Buffer.from(hkdfSync('sha256', shared, salt, INFO, KEY_BYTES));
}

/** Seals `plaintext` for the holder of `recipient`'s private key, bound to `context`. */
export function seal(plaintext: Buffer, recipient: KeyObject, context: Buffer): Buffer {
  const eph = generateX25519KeyPair();
  const ephRaw = rawPublicKey(eph.publicKey);
  const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: recipient });
  const key = aeadKey(shared, ephRaw, rawPublicKey(recipient));
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(context);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(VERSION), ephRaw, nonce, body, cipher.getAuthTag()]);
}

/** Opens what seal() made; throws SealedBoxError for a wrong key, context or any changed byte. */
export function open(sealed: Buffer, recipient: X25519KeyPair, context: Buffer): Buffer {
  if (sealed.length < HEADER_BYTES + TAG_BYTES) throw new SealedBoxError('sealed data too short');
  if (sealed[0] !== VERSION) throw new SealedBoxError(`unknown sealed-box version ${sealed[0]}`);
  const ephRaw = sealed.subarray(1, 1 + KEY_BYTES);
  const nonce = sealed.subarray(1 + KEY_BYTES, HEADER_BYTES);
  const body = sealed.subarray(HEADER_BYTES, sealed.length - TAG_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  let shared: Buffer;
  try {
    const eph = decodePublicKey(Buffer.from(ephRaw).toString('base64url'));
    shared = diffieHellman({ privateKey: recipient.privateKey, publicKey: eph });
  } catch (err) {
    throw new SealedBoxError(`bad ephemeral key: ${(err as Error).message}`);
  }
  const key = aeadKey(shared, Buffer.from(ephRaw), rawPublicKey(recipient.publicKey));
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(context);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new SealedBoxError(
      'authentication failed: sealed for another key or another context, or altered',
    );
  }
}
