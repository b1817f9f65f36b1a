// Background work that fails is logged, not left to end the process as an unhandled rejection.
import { describe, expect, it, jest } from '@jest/globals';
import { inBackground } from '../../../src/common/background.js';

describe('inBackground', () => {
  it('logs a failure with what was being done, and leaves no unhandled rejection', async () => {
    const unhandled = jest.fn();
    process.on('unhandledRejection', unhandled);
    try {
      const error = jest.fn();
      inBackground('saving the state', Promise.reject(new Error('ENOSPC')), { error } as never);
      inBackground('watching', Promise.resolve(1), { error } as never);
      await new Promise((r) => setTimeout(r, 10));
      expect(error).toHaveBeenCalledTimes(1);
      expect(error).toHaveBeenCalledWith({ err: new Error('ENOSPC') }, 'saving the state failed');
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });
});
