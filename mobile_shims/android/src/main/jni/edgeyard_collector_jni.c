/*
 * JNI glue: dev.edgeyard.mobile.NativeCollector -> the C telemetry collector (mobile_shims/c,
 * include/edgeyard.h: ey_window_*).
 *
 * STUB, not built or tested in edgeyard's CI (no Android NDK there). It fixes the JNI symbols
 * and the Java-side contract; the calls into the C collector are TODO. To finish it:
 *   - nativeOpen: read telemetry.projections from <releaseDir>/release.json, fill an ey_spec
 *     (signals, classes, engines = the chain's target ids passed in), ey_window_init;
 *   - nativeRecord: wrap each float[] as an ey_tensor (EY_F32, shape from the long[][]) and call
 *     ey_window_observe(..., engine, latency_s, now_ns), then ey_window_add_fallback per fallback;
 *   - nativeTakeWindow: ey_window_encode_otlp_json, then start a new window;
 *   - build with the NDK as libedgeyard_collector_jni.so, linked with mobile_shims/c's sources.
 * Until then every function fails safely: nativeOpen returns 0, which NativeCollector.open
 * reports as an error.
 */
#include <jni.h>
#include <stdint.h>

JNIEXPORT jlong JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeOpen(JNIEnv *env, jclass cls, jstring release_dir,
                                                    jobjectArray engines) {
    (void)cls;
    (void)engines;
    const char *release = (*env)->GetStringUTFChars(env, release_dir, NULL);
    jlong handle = 0;
    /* TODO: allocate {ey_spec, ey_window}, fill the spec from release.json, ey_window_init */
    (*env)->ReleaseStringUTFChars(env, release_dir, release);
    return handle;
}

JNIEXPORT void JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeRecord(
        JNIEnv *env, jclass cls, jlong handle, jobjectArray inputs, jobjectArray input_shapes,
        jobjectArray outputs, jobjectArray output_shapes, jint engine, jdouble latency_s,
        jobjectArray fb_engines, jobjectArray fb_kinds, jobjectArray fb_reasons) {
    (void)cls;
    (void)input_shapes;
    (void)output_shapes;
    (void)engine;
    (void)latency_s;
    (void)fb_kinds;
    (void)fb_reasons;
    if (handle == 0) return;
    jsize n_in = inputs ? (*env)->GetArrayLength(env, inputs) : 0;
    jsize n_out = outputs ? (*env)->GetArrayLength(env, outputs) : 0;
    (void)n_in;
    (void)n_out;
    /* TODO: for each tensor: GetFloatArrayElements (copying is fine: the window only reads),
     * build ey_tensor {data, EY_F32, ndim, shape}; ey_window_observe(w, ins, n_in, outs, n_out,
     * engine, latency_s, now_ns); release the arrays with JNI_ABORT; then for i < length of
     * fb_engines: ey_window_add_fallback(w, engine_i, kind_i, reason_i, 1). */
    (void)fb_engines;
}

JNIEXPORT jstring JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeTakeWindow(JNIEnv *env, jclass cls, jlong handle,
                                                          jstring upload_id) {
    (void)env;
    (void)cls;
    (void)handle;
    (void)upload_id;
    /* TODO: size = ey_window_encode_otlp_json(w, id, NULL, 0); encode into a buffer of size + 1;
     * NewStringUTF; ey_window_init a fresh window. */
    return NULL;
}

JNIEXPORT void JNICALL
Java_dev_edgeyard_mobile_NativeCollector_nativeClose(JNIEnv *env, jclass cls, jlong handle) {
    (void)env;
    (void)cls;
    (void)handle;
    /* TODO: free the spec and window allocated by nativeOpen */
}
