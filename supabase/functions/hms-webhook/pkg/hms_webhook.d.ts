/* tslint:disable */
/* eslint-disable */

/**
 * One handler per isolate: configuration parsed once, then reused for every request.
 */
export class WebhookHandler {
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Runs `begin` on a POST without I/O, for benchmarking verify + parse + classify + plan
     * inside Wasm with the boundary the request path has: the two credential header values
     * (what `handle` fetches by name), the body bytes in, one string out. Answers
     * `call\n<RPC body>` or `<status>\n<reply body>`; the service key is never included.
     */
    check_event(signature: string | null | undefined, secret_header: string | null | undefined, body: Uint8Array | number[], now_ms: number): string;
    /**
     * Handles one request. Never rejects for request or upstream problems: they become JSON
     * replies (4xx/5xx) and exactly one log line.
     */
    handle(request: Request): Promise<Response>;
    /**
     * Builds the handler from a plain object of environment strings (see [`Self::variables`]).
     * Never throws: an unusable object yields a handler that answers 500 `misconfigured`.
     */
    constructor(env: any);
    /**
     * The names of the environment variables the core reads: the shim passes exactly these.
     */
    static variables(): string[];
}

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_webhookhandler_free: (a: number, b: number) => void;
    readonly webhookhandler_check_event: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => [number, number];
    readonly webhookhandler_handle: (a: number, b: any) => any;
    readonly webhookhandler_new: (a: any) => number;
    readonly webhookhandler_variables: () => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h60702a48838d1764: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__hb98d63cc49481475: (a: number, b: number, c: any, d: any) => void;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_destroy_closure: (a: number, b: number) => void;
    readonly __externref_drop_slice: (a: number, b: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
