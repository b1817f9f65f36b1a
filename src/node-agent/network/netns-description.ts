// What the node agent reads from a network namespace (netns-reader.ts, from iproute2's JSON): its
// links with their addresses, and its routes. The node agent's own shape, not the agent's wire;
// guest-network-config.ts turns it into the guest's interfaces and routes.

/** A network namespace as the node agent read it. */
export interface NetnsDescription {
  links: NetnsLink[];
  routes: NetnsRoute[];
}

export interface NetnsLink {
  name: string;
  mtu: number;
  hwAddr: string;
  /** Link kind as the kernel names it: "veth", "loopback", "tap", ... */
  type: string;
  rawFlags?: number;
  addresses: { address: string; prefixLength: number }[];
}

export interface NetnsRoute {
  /** A CIDR, or empty / "default" for the default route. */
  dest?: string;
  gateway?: string;
  source?: string;
  device: string;
  scope?: number;
}
