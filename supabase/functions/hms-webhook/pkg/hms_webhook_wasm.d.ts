/** The optimised hms_webhook Wasm module, base64-encoded. */
export declare const wasmBase64: string;
