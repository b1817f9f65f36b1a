// Each agent RPC's deadline, in one table. A caller names its own only when its situation differs
// (boot's short Health.Check polls, adoption's wait for a busy guest). Under TCG a guest answers
// 30× slower than under KVM, so the calls that mount, configure or start things get a minute.
export const RPC_TIMEOUT_MS = {
  Check: 30_000,
  Version: 30_000,
  GetGuestDetails: 30_000,
  CreateSandbox: 60_000,
  DestroySandbox: 10_000,
  UpdateInterface: 60_000,
  UpdateRoutes: 60_000,
  ListInterfaces: 60_000,
  ListRoutes: 60_000,
  CreateContainer: 60_000,
  StartContainer: 60_000,
  /** Plus the stop timeout the request gives the guest. */
  RemoveContainer: 20_000,
  ExecProcess: 30_000,
  SignalProcess: 10_000,
  /** WaitProcess and the reads block until the process exits or writes; the caller re-issues. */
  WaitProcess: 60 * 60_000,
  ReadStdout: 60 * 60_000,
  ReadStderr: 60 * 60_000,
  WriteStdin: 30_000,
  CloseStdin: 30_000,
  TtyWinResize: 30_000,
  /** Reads a dozen small files; the node agent's periodic sampling passes a shorter one. */
  StatsContainer: 30_000,
} as const satisfies Record<string, number>;

export type AgentRpc = keyof typeof RPC_TIMEOUT_MS;
