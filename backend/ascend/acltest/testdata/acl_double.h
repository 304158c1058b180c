/*
 * ACL test double: shared declarations.
 *
 * The double stands in for libascendcl.so, libnnopbase.so and the aclnn
 * operator libraries (libopapi.so, or libopapi_math.so / libopapi_nn.so /
 * libopapi_transformer.so) of Huawei CANN. It exports the symbols the SORA
 * Ascend backend uses with the signatures of CANN's public headers
 * (acl/acl_base.h, acl/acl_rt.h, aclnn/acl_meta.h, aclnnop/aclnn_*.h) and
 * implements them on host memory. "Device" memory is host memory that only
 * the double hands out; a task enqueued on a stream runs when the stream is
 * synchronised, so a program that reads results without synchronising reads
 * stale data, as it would on the device.
 *
 * Everything beyond the CANN API is prefixed acltd_ (internal, shared
 * between the double's libraries) or acltest_ (the control API the Go tests
 * call: failure injection, call log, object counters).
 */
#ifndef ACL_DOUBLE_H
#define ACL_DOUBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_EXPORT __attribute__((visibility("default")))
#define TD_HIDDEN __attribute__((visibility("hidden")))

typedef int aclError;
typedef int32_t aclnnStatus;
typedef void *aclrtStream;
typedef void *aclrtContext;
typedef int aclDataType;
typedef int aclFormat;
typedef int aclrtMemcpyKind;
typedef int aclrtMemMallocPolicy;
typedef int aclrtMemAttr;
typedef struct aclOpExecutor aclOpExecutor;
typedef struct aclTensor aclTensor;
typedef struct aclScalar aclScalar;
typedef struct aclIntArray aclIntArray;
typedef struct aclBoolArray aclBoolArray;

/* aclDataType (acl/acl_base.h) */
enum {
    ACL_FLOAT = 0,
    ACL_FLOAT16 = 1,
    ACL_INT8 = 2,
    ACL_INT32 = 3,
    ACL_UINT8 = 4,
    ACL_INT16 = 6,
    ACL_UINT16 = 7,
    ACL_UINT32 = 8,
    ACL_INT64 = 9,
    ACL_UINT64 = 10,
    ACL_DOUBLE = 11,
    ACL_BOOL = 12,
};
/* aclFormat */
enum { ACL_FORMAT_NCHW = 0, ACL_FORMAT_NHWC = 1, ACL_FORMAT_ND = 2 };
/* aclrtMemcpyKind (acl/acl_rt.h) */
enum {
    ACL_MEMCPY_HOST_TO_HOST = 0,
    ACL_MEMCPY_HOST_TO_DEVICE = 1,
    ACL_MEMCPY_DEVICE_TO_HOST = 2,
    ACL_MEMCPY_DEVICE_TO_DEVICE = 3,
};

/* Status codes (acl/acl_base.h, acl/error_codes/rt_error_codes.h, aclnn). */
#define ACL_SUCCESS 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_UNINITIALIZE 100001
#define ACL_ERROR_REPEAT_INITIALIZE 100002
#define ACL_ERROR_REPEAT_FINALIZE 100037
#define ACL_ERROR_RT_PARAM_INVALID 107000
#define ACL_ERROR_RT_CONTEXT_NULL 107002
#define ACL_ERROR_RT_INVALID_MEMORY_TYPE 107016
#define ACL_ERROR_RT_INVALID_HANDLE 107017
#define ACL_ERROR_RT_MEMORY_ALLOCATION 207001
#define ACL_ERROR_RT_MEMORY_FREE 207002
#define ACL_ERROR_RT_AICORE_EXCEPTION 507015
#define ACLNN_SUCCESS 0
#define ACLNN_ERR_PARAM_NULLPTR 161001
#define ACLNN_ERR_PARAM_INVALID 161002
#define ACLNN_ERR_RUNTIME_ERROR 361001

#define TD_MAXDIM 8

/* A tensor view as the double's kernels see it: element strides and
 * offset relative to the storage start, as aclCreateTensor documents. */
typedef struct {
    int ndim;
    int64_t dims[TD_MAXDIM];
    int64_t strides[TD_MAXDIM];
    int64_t offset;
    int dtype;
    int format;
    int64_t storage_elems;
    char *data;
} td_view;

#define TD_MAGIC_TENSOR 0x54454e53u
#define TD_MAGIC_SCALAR 0x5343414cu
#define TD_MAGIC_INTARR 0x494e5441u
#define TD_MAGIC_BOOLARR 0x424f4f4cu
#define TD_MAGIC_EXEC 0x45584543u
#define TD_MAGIC_DEAD 0xdeaddeadu

struct aclTensor {
    uint32_t magic;
    td_view v;
};
struct aclScalar {
    uint32_t magic;
    int dtype;
    double value;
};
struct aclIntArray {
    uint32_t magic;
    uint64_t n;
    int64_t *v;
};
struct aclBoolArray {
    uint32_t magic;
    uint64_t n;
    bool *v;
};

/* Object kinds counted by the runtime (acltest_live reports them). */
enum { TD_TENSOR, TD_SCALAR, TD_INTARRAY, TD_BOOLARRAY, TD_EXECUTOR, TD_NKINDS };

/* ---- internal runtime hooks, exported by libascendcl.so ---- */

/* acltd_enter logs a call of the named API function and returns the status
 * injected for this call, or 0. */
TD_EXPORT int acltd_enter(const char *name);
/* acltd_set_error sets this thread's message for aclGetRecentErrMsg. */
TD_EXPORT void acltd_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* acltd_need_context fails with ACL_ERROR_RT_CONTEXT_NULL (and sets the
 * message) when the calling thread has no current context. */
TD_EXPORT int acltd_need_context(const char *name);
/* acltd_stream_ok checks a stream handle (NULL is the default stream). */
TD_EXPORT int acltd_stream_ok(const char *name, aclrtStream s);
/* A task runs when its stream is synchronised; it returns a status and sets
 * the error message on failure. release frees arg, whether or not the task
 * ran. */
typedef int (*acltd_task_fn)(void *arg);
TD_EXPORT int acltd_enqueue(aclrtStream s, const char *name, acltd_task_fn run, void (*release)(void *), void *arg);
/* acltd_device_range returns 0 when [p, p+bytes) lies in one live device
 * allocation, 1 when it lies in freed device memory and 2 otherwise. */
TD_EXPORT int acltd_device_range(const void *p, int64_t bytes);
TD_EXPORT void acltd_count(int kind, int delta);
/* acltd_soc_name is the chip aclrtGetSocName names; acltd_soc_float16_cube
 * reports whether it is an Atlas training or inference series part, whose
 * cube unit computes float32 matrix products only in FLOAT16. */
TD_EXPORT const char *acltd_soc_name(void);
TD_EXPORT int acltd_soc_float16_cube(void);
/* acltd_register_lib records that an operator library was loaded, so that
 * tests can see which layout the backend picked. */
TD_EXPORT void acltd_register_lib(const char *name);

#endif
