// Moved to src/agent/block-serial.ts so the guest agent computes the same serial; kept here for
// existing imports.
export { VIRTIO_BLK_SERIAL_MAX, virtioBlkSerial } from '../../agent/block-serial.js';
