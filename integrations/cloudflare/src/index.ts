export { withPalisade, inspectable } from "./palisade.js";
export type { PalisadeOptions, Metadata, Protocol } from "./palisade.js";
