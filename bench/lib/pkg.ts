/**
 * Loads the committed Wasm package (supabase/functions/hms-webhook/pkg/) the way the shim does:
 * the glue module plus the base64-inlined bytes, instantiated synchronously once.
 */

export const PKG_DIR = new URL(
  "../../supabase/functions/hms-webhook/pkg/",
  import.meta.url,
);

type Glue =
  typeof import("../../supabase/functions/hms-webhook/pkg/hms_webhook.js");
type InitOutput = ReturnType<Glue["initSync"]>;

export interface LoadedPackage {
  glue: Glue;
  /** The instance's exports, including `memory`. */
  exports: InitOutput;
  /** The optimised .wasm bytes that were instantiated. */
  wasmBytes: Uint8Array<ArrayBuffer>;
}

/** The optimised .wasm bytes, decoded from the inlined module. */
export async function wasmBytes(): Promise<Uint8Array<ArrayBuffer>> {
  const inline = await import(new URL("hms_webhook_wasm.js", PKG_DIR).href) as {
    wasmBase64: string;
  };
  return Uint8Array.fromBase64(inline.wasmBase64);
}

/** Imports the glue and instantiates the module (dynamic, so a missing build fails late). */
export async function loadPackage(): Promise<LoadedPackage> {
  const glue = await import(new URL("hms_webhook.js", PKG_DIR).href) as Glue;
  const bytes = await wasmBytes();
  return { glue, exports: glue.initSync({ module: bytes }), wasmBytes: bytes };
}
