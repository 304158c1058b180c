/*
 * ACL test double: libascendcl.so, the runtime part (init, devices,
 * contexts, streams, memory, copies, error messages), plus the call log,
 * failure injection and counters that the tests query (acltest_*).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl_double.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
#define LOCK() pthread_mutex_lock(&g_mu)
#define UNLOCK() pthread_mutex_unlock(&g_mu)

/* ---------------- error messages (per thread, like CANN) ---------------- */

static __thread char t_err[2048];
static __thread int t_has_err;

TD_EXPORT void acltd_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err, sizeof t_err, fmt, ap);
    va_end(ap);
    t_has_err = 1;
}

/* aclGetRecentErrMsg returns this thread's most recent error message and
 * clears it; NULL when there is none. */
TD_EXPORT const char *aclGetRecentErrMsg(void) {
    if (!t_has_err) return NULL;
    t_has_err = 0;
    return t_err;
}

/* ---------------- call log and failure injection ---------------- */

#define MAX_NAMES 1024
#define MAX_LOG (1 << 20)
#define MAX_INJ 32

static char *g_names[MAX_NAMES];
static int64_t g_counts[MAX_NAMES];
static int g_nnames;
static uint16_t *g_log;
static int64_t g_nlog;
static int64_t g_log_dropped;

typedef struct {
    int active;
    char name[128];
    int64_t skip, times, seen, fired;
    int status;
    char msg[512];
} injection;
static injection g_inj[MAX_INJ];

static int intern_locked(const char *name) {
    for (int i = 0; i < g_nnames; i++)
        if (strcmp(g_names[i], name) == 0) return i;
    if (g_nnames == MAX_NAMES) return -1;
    g_names[g_nnames] = strdup(name);
    return g_nnames++;
}

/* enter_locked logs name and returns an injected status (0 if none); the
 * injected message is copied to *msg. */
static int enter_locked(const char *name, char *msg, size_t cap) {
    int id = intern_locked(name);
    if (id >= 0) {
        g_counts[id]++;
        if (!g_log) g_log = malloc(sizeof(uint16_t) * MAX_LOG);
        if (g_log && g_nlog < MAX_LOG)
            g_log[g_nlog++] = (uint16_t)id;
        else
            g_log_dropped++;
    }
    for (int i = 0; i < MAX_INJ; i++) {
        injection *in = &g_inj[i];
        if (!in->active || strcmp(in->name, name) != 0) continue;
        if (in->seen < in->skip) {
            in->seen++;
            continue;
        }
        if (in->times > 0 && in->fired >= in->times) continue;
        in->fired++;
        snprintf(msg, cap, "%s", in->msg);
        return in->status;
    }
    return 0;
}

TD_EXPORT int acltd_enter(const char *name) {
    char msg[512];
    LOCK();
    int st = enter_locked(name, msg, sizeof msg);
    UNLOCK();
    if (st != 0) acltd_set_error("%s", msg);
    return st;
}

/* ---------------- object counters ---------------- */

static int64_t g_objs[TD_NKINDS];

TD_EXPORT void acltd_count(int kind, int delta) {
    LOCK();
    if (kind >= 0 && kind < TD_NKINDS) g_objs[kind] += delta;
    UNLOCK();
}

static char g_libs[1024];

TD_EXPORT void acltd_register_lib(const char *name) {
    LOCK();
    if (g_libs[0]) strncat(g_libs, ",", sizeof g_libs - strlen(g_libs) - 1);
    strncat(g_libs, name, sizeof g_libs - strlen(g_libs) - 1);
    UNLOCK();
}

/* ---------------- init, devices, contexts ---------------- */

#define MAX_DEV 8
#define CTX_MAGIC 0x43545854u

typedef struct ctx {
    uint32_t magic;
    int device;
    int is_default;
} ctx;

static int g_inited;
static int g_ndev = 1;
static ctx *g_default_ctx[MAX_DEV];
static int g_dev_refs[MAX_DEV];
static int64_t g_live_ctx;
static __thread ctx *t_ctx;

TD_EXPORT aclError aclInit(const char *configPath) {
    (void)configPath;
    int st = acltd_enter("aclInit");
    if (st) return st;
    LOCK();
    if (g_inited) {
        UNLOCK();
        acltd_set_error("aclInit: already initialised in this process");
        return ACL_ERROR_REPEAT_INITIALIZE;
    }
    g_inited = 1;
    UNLOCK();
    return ACL_SUCCESS;
}

TD_EXPORT aclError aclFinalize(void) {
    int st = acltd_enter("aclFinalize");
    if (st) return st;
    LOCK();
    if (!g_inited) {
        UNLOCK();
        acltd_set_error("aclFinalize: not initialised");
        return ACL_ERROR_REPEAT_FINALIZE;
    }
    g_inited = 0;
    UNLOCK();
    return ACL_SUCCESS;
}

static int need_init(const char *name) {
    LOCK();
    int ok = g_inited;
    UNLOCK();
    if (!ok) {
        acltd_set_error("%s: aclInit has not been called", name);
        return ACL_ERROR_UNINITIALIZE;
    }
    return 0;
}

TD_EXPORT aclError aclrtGetDeviceCount(uint32_t *count) {
    int st = acltd_enter("aclrtGetDeviceCount");
    if (st) return st;
    if (!count) {
        acltd_set_error("aclrtGetDeviceCount: count is NULL");
        return ACL_ERROR_INVALID_PARAM;
    }
    LOCK();
    *count = (uint32_t)g_ndev;
    UNLOCK();
    return ACL_SUCCESS;
}

/* The chip the double pretends to be, as aclrtGetSocName names it; an
 * Atlas A2 part unless a test says otherwise (acltest_set_soc_name). An
 * empty name makes aclrtGetSocName return NULL, as it does on failure. */
#define DEFAULT_SOC "Ascend910B3"
static char g_soc[128] = DEFAULT_SOC;

TD_EXPORT const char *aclrtGetSocName(void) {
    if (acltd_enter("aclrtGetSocName")) return NULL;
    LOCK();
    const char *s = g_soc[0] ? g_soc : NULL;
    UNLOCK();
    return s;
}

TD_EXPORT const char *acltd_soc_name(void) {
    return g_soc;
}

/* The Atlas training series (the first Ascend 910 parts) and the Atlas
 * inference series (Ascend 310P) have no float32 mode in the cube unit:
 * CANN's aclnnMm documentation says cubeMathType 0 (KEEP_DTYPE) with FLOAT
 * inputs is unsupported there and reports an error, and that 1
 * (ALLOW_FP32_DOWN_PRECISION) computes in FLOAT16 there. The names are
 * those aclrtGetSocName gives for those parts. */
TD_EXPORT int acltd_soc_float16_cube(void) {
    static const char *old[] = {"Ascend910PremiumA", "Ascend910ProA", "Ascend910A", "Ascend910ProB", "Ascend910B"};
    LOCK();
    int r = strncmp(g_soc, "Ascend310P", 10) == 0;
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
        if (strcmp(g_soc, old[i]) == 0) r = 1;
    UNLOCK();
    return r;
}

static int check_dev(const char *name, int32_t dev) {
    if (dev < 0 || dev >= g_ndev || dev >= MAX_DEV) {
        acltd_set_error("%s: device id %d is invalid (%d devices)", name, dev, g_ndev);
        return ACL_ERROR_INVALID_PARAM;
    }
    return 0;
}

TD_EXPORT aclError aclrtSetDevice(int32_t deviceId) {
    int st = acltd_enter("aclrtSetDevice");
    if (st) return st;
    if ((st = need_init("aclrtSetDevice"))) return st;
    LOCK();
    if ((st = check_dev("aclrtSetDevice", deviceId))) {
        UNLOCK();
        return st;
    }
    if (!g_default_ctx[deviceId]) {
        ctx *c = calloc(1, sizeof *c);
        c->magic = CTX_MAGIC;
        c->device = deviceId;
        c->is_default = 1;
        g_default_ctx[deviceId] = c;
        g_live_ctx++;
    }
    g_dev_refs[deviceId]++;
    t_ctx = g_default_ctx[deviceId];
    UNLOCK();
    return ACL_SUCCESS;
}

TD_EXPORT aclError aclrtResetDevice(int32_t deviceId) {
    int st = acltd_enter("aclrtResetDevice");
    if (st) return st;
    LOCK();
    if ((st = check_dev("aclrtResetDevice", deviceId))) {
        UNLOCK();
        return st;
    }
    if (g_dev_refs[deviceId] == 0) {
        UNLOCK();
        acltd_set_error("aclrtResetDevice: device %d was not set", deviceId);
        return ACL_ERROR_INVALID_PARAM;
    }
    if (--g_dev_refs[deviceId] == 0) {
        ctx *c = g_default_ctx[deviceId];
        if (t_ctx == c) t_ctx = NULL;
        c->magic = 0;
        free(c);
        g_default_ctx[deviceId] = NULL;
        g_live_ctx--;
    }
    UNLOCK();
    return ACL_SUCCESS;
}

TD_EXPORT aclError aclrtCreateContext(aclrtContext *context, int32_t deviceId) {
    int st = acltd_enter("aclrtCreateContext");
    if (st) return st;
    if ((st = need_init("aclrtCreateContext"))) return st;
    if (!context) {
        acltd_set_error("aclrtCreateContext: context is NULL");
        return ACL_ERROR_INVALID_PARAM;
    }
    LOCK();
    if ((st = check_dev("aclrtCreateContext", deviceId))) {
        UNLOCK();
        return st;
    }
    ctx *c = calloc(1, sizeof *c);
    c->magic = CTX_MAGIC;
    c->device = deviceId;
    g_live_ctx++;
    t_ctx = c;
    *context = c;
    UNLOCK();
    return ACL_SUCCESS;
}

TD_EXPORT aclError aclrtDestroyContext(aclrtContext context) {
    int st = acltd_enter("aclrtDestroyContext");
    if (st) return st;
    ctx *c = context;
    if (!c || c->magic != CTX_MAGIC || c->is_default) {
        acltd_set_error("aclrtDestroyContext: %p is not a context created by aclrtCreateContext", context);
        return ACL_ERROR_RT_INVALID_HANDLE;
    }
    LOCK();
    if (t_ctx == c) t_ctx = NULL;
    c->magic = 0;
    free(c);
    g_live_ctx--;
    UNLOCK();
    return ACL_SUCCESS;
}

TD_EXPORT aclError aclrtSetCurrentContext(aclrtContext context) {
    int st = acltd_enter("aclrtSetCurrentContext");
    if (st) return st;
    ctx *c = context;
    if (!c || c->magic != CTX_MAGIC) {
        acltd_set_error("aclrtSetCurrentContext: %p is not a live context", context);
        return ACL_ERROR_RT_INVALID_HANDLE;
    }
    t_ctx = c;
    return ACL_SUCCESS;
}

TD_EXPORT int acltd_need_context(const char *name) {
    if (!t_ctx || t_ctx->magic != CTX_MAGIC) {
        acltd_set_error("%s: no current context on this thread (call aclrtSetDevice or aclrtSetCurrentContext on it first)", name);
        return ACL_ERROR_RT_CONTEXT_NULL;
    }
    return 0;
}

/* ---------------- memory ---------------- */

enum { MEM_DEVICE = 1, MEM_HOST = 2 };
enum { ST_LIVE = 1, ST_FREED = 2 };

typedef struct {
    char *base;
    size_t size;
    int kind;
    int state;
} alloc_rec;

static alloc_rec *g_allocs;
static int64_t g_nallocs, g_capallocs;
static int64_t g_dev_live, g_dev_bytes, g_host_live, g_dev_limit;
static int64_t g_dev_peak;

static alloc_rec *find_containing_locked(const void *p, int64_t bytes, int kind, int state) {
    const char *q = p;
    for (int64_t i = 0; i < g_nallocs; i++) {
        alloc_rec *a = &g_allocs[i];
        if (a->kind != kind || (state && a->state != state)) continue;
        if (q >= a->base && q + bytes <= a->base + a->size) return a;
    }
    return NULL;
}

static int overlaps_device_locked(const void *p, int64_t bytes) {
    const char *q = p;
    for (int64_t i = 0; i < g_nallocs; i++) {
        alloc_rec *a = &g_allocs[i];
        if (a->kind != MEM_DEVICE) continue;
        if (q < a->base + a->size && q + (bytes > 0 ? bytes : 1) > a->base) return 1;
    }
    return 0;
}

TD_EXPORT int acltd_device_range(const void *p, int64_t bytes) {
    if (bytes <= 0) return 0;
    LOCK();
    int r = 2;
    if (find_containing_locked(p, bytes, MEM_DEVICE, ST_LIVE))
        r = 0;
    else if (find_containing_locked(p, bytes, MEM_DEVICE, ST_FREED))
        r = 1;
    UNLOCK();
    return r;
}

static void add_alloc_locked(char *base, size_t size, int kind) {
    if (g_nallocs == g_capallocs) {
        g_capallocs = g_capallocs ? 2 * g_capallocs : 256;
        g_allocs = realloc(g_allocs, sizeof *g_allocs * g_capallocs);
    }
    g_allocs[g_nallocs++] = (alloc_rec){base, size, kind, ST_LIVE};
}

TD_EXPORT aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy) {
    int st = acltd_enter("aclrtMalloc");
    if (st) return st;
    if ((st = acltd_need_context("aclrtMalloc"))) return st;
    if (!devPtr || size == 0 || policy < 0 || policy > 7) {
        acltd_set_error("aclrtMalloc: invalid argument (devPtr=%p size=%zu policy=%d)", (void *)devPtr, size, policy);
        return ACL_ERROR_INVALID_PARAM;
    }
    LOCK();
    if (g_dev_limit > 0 && g_dev_bytes + (int64_t)size > g_dev_limit) {
        int64_t used = g_dev_bytes;
        UNLOCK();
        acltd_set_error("aclrtMalloc: out of device memory: %zu bytes requested, %lld of %lld in use",
                        size, (long long)used, (long long)g_dev_limit);
        return ACL_ERROR_RT_MEMORY_ALLOCATION;
    }
    void *p = NULL;
    if (posix_memalign(&p, 512, size) != 0) {
        UNLOCK();
        acltd_set_error("aclrtMalloc: host allocation of %zu bytes failed", size);
        return ACL_ERROR_RT_MEMORY_ALLOCATION;
    }
    /* Fresh device memory holds garbage: NaN bit patterns. */
    memset(p, 0xff, size);
    add_alloc_locked(p, size, MEM_DEVICE);
    g_dev_live++;
    g_dev_bytes += size;
    if (g_dev_bytes > g_dev_peak) g_dev_peak = g_dev_bytes;
    UNLOCK();
    *devPtr = p;
    return ACL_SUCCESS;
}

static int streams_idle_locked(void);
static void release_freed_locked(void);

TD_EXPORT aclError aclrtFree(void *devPtr) {
    int st = acltd_enter("aclrtFree");
    if (st) return st;
    if ((st = acltd_need_context("aclrtFree"))) return st;
    LOCK();
    for (int64_t i = 0; i < g_nallocs; i++) {
        alloc_rec *a = &g_allocs[i];
        if (a->kind == MEM_DEVICE && a->state == ST_LIVE && a->base == devPtr) {
            /* Kept aside until every stream is idle, so that a queued task
             * that still uses it fails cleanly instead of reading freed
             * host memory. */
            a->state = ST_FREED;
            g_dev_live--;
            g_dev_bytes -= a->size;
            if (streams_idle_locked()) release_freed_locked();
            UNLOCK();
            return ACL_SUCCESS;
        }
    }
    UNLOCK();
    acltd_set_error("aclrtFree: %p is not the start of a live device allocation", devPtr);
    return ACL_ERROR_RT_MEMORY_FREE;
}

TD_EXPORT aclError aclrtMallocHost(void **hostPtr, size_t size) {
    int st = acltd_enter("aclrtMallocHost");
    if (st) return st;
    if ((st = acltd_need_context("aclrtMallocHost"))) return st;
    if (!hostPtr || size == 0) {
        acltd_set_error("aclrtMallocHost: invalid argument (hostPtr=%p size=%zu)", (void *)hostPtr, size);
        return ACL_ERROR_INVALID_PARAM;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0) {
        acltd_set_error("aclrtMallocHost: allocation of %zu bytes failed", size);
        return ACL_ERROR_RT_MEMORY_ALLOCATION;
    }
    LOCK();
    add_alloc_locked(p, size, MEM_HOST);
    g_host_live++;
    UNLOCK();
    *hostPtr = p;
    return ACL_SUCCESS;
}

TD_EXPORT aclError aclrtFreeHost(void *hostPtr) {
    int st = acltd_enter("aclrtFreeHost");
    if (st) return st;
    LOCK();
    for (int64_t i = 0; i < g_nallocs; i++) {
        alloc_rec *a = &g_allocs[i];
        if (a->kind == MEM_HOST && a->state == ST_LIVE && a->base == hostPtr) {
            a->state = ST_FREED;
            g_host_live--;
            if (streams_idle_locked()) release_freed_locked();
            UNLOCK();
            return ACL_SUCCESS;
        }
    }
    UNLOCK();
    acltd_set_error("aclrtFreeHost: %p was not allocated by aclrtMallocHost", hostPtr);
    return ACL_ERROR_RT_MEMORY_FREE;
}

/* ---------------- memory information ---------------- */

/* aclrtMemAttr (acl/acl_rt.h; CANN's "aclrtMemAttr" reference page):
 * ACL_DDR_MEM = 0 and ACL_HBM_MEM = 1 (all of that memory, huge and normal
 * pages), then the huge, normal and peer-to-peer parts of each up to
 * ACL_HBM_MEM_P2P_NORMAL = 9, the 1 GiB huge-page kinds ACL_HBM_MEM_HUGE1G
 * and ACL_HBM_MEM_P2P_HUGE1G (10, 11) and, in newer releases,
 * ACL_MEM_NORMAL .. ACL_MEM_P2P_HUGE1G (12..17), which CANN resolves to
 * whichever memory the device has. The double knows every one of them and
 * refuses any other value. */
enum { ACL_DDR_MEM = 0, ACL_HBM_MEM = 1, TD_NMEMATTR = 18 };

/* What aclrtGetMemInfo reports for each attribute. By default the double
 * poses as its default chip, an Ascend910B3 with 64 GiB of HBM: ACL_HBM_MEM
 * reports 64 GiB total and free, and every other attribute 0 and 0, which
 * is what CANN documents for memory the part does not have ("otherwise the
 * free and total sizes are both 0"). Tests set other figures with
 * acltest_set_mem_info; the figures do not follow the double's
 * allocations. */
#define TD_DEFAULT_HBM ((int64_t)64 << 30)
static int64_t g_mem_free[TD_NMEMATTR] = {[ACL_HBM_MEM] = TD_DEFAULT_HBM};
static int64_t g_mem_total[TD_NMEMATTR] = {[ACL_HBM_MEM] = TD_DEFAULT_HBM};

/* aclrtGetMemInfo gives the free and total bytes of the memory attr names
 * on the current device. As CANN documents, the device must have been set
 * (the call names no device), free and total must not be NULL, and attr
 * must be an aclrtMemAttr value; CANN passes an unknown one to the runtime,
 * whose error for it is ACL_ERROR_RT_INVALID_MEMORY_TYPE. */
TD_EXPORT aclError aclrtGetMemInfo(aclrtMemAttr attr, size_t *freeBytes, size_t *totalBytes) {
    int st = acltd_enter("aclrtGetMemInfo");
    if (st) return st;
    if (!freeBytes || !totalBytes) {
        acltd_set_error("aclrtGetMemInfo: invalid argument (free=%p total=%p)", (void *)freeBytes, (void *)totalBytes);
        return ACL_ERROR_INVALID_PARAM;
    }
    if ((st = acltd_need_context("aclrtGetMemInfo"))) return st;
    if (attr < 0 || attr >= TD_NMEMATTR) {
        acltd_set_error("aclrtGetMemInfo: memory attribute %d is not an aclrtMemAttr value", attr);
        return ACL_ERROR_RT_INVALID_MEMORY_TYPE;
    }
    LOCK();
    *freeBytes = (size_t)g_mem_free[attr];
    *totalBytes = (size_t)g_mem_total[attr];
    UNLOCK();
    return ACL_SUCCESS;
}

/* ---------------- streams and tasks ---------------- */

#define STREAM_MAGIC 0x5354524du

typedef struct task {
    struct task *next;
    const char *name;
    acltd_task_fn run;
    void (*release)(void *);
    void *arg;
} task;

typedef struct stream {
    uint32_t magic;
    ctx *owner;
    task *head, *tail;
    int64_t pending;
    struct stream *next_stream;
} stream;

static stream *g_streams;
static int64_t g_live_streams;

static int streams_idle_locked(void) {
    for (stream *s = g_streams; s; s = s->next_stream)
        if (s->pending) return 0;
    return 1;
}

static void release_freed_locked(void) {
    int64_t j = 0;
    for (int64_t i = 0; i < g_nallocs; i++) {
        if (g_allocs[i].state == ST_FREED) {
            free(g_allocs[i].base);
            continue;
        }
        g_allocs[j++] = g_allocs[i];
    }
    g_nallocs = j;
}

static int stream_ok_locked(stream *s) {
    for (stream *t = g_streams; t; t = t->next_stream)
        if (t == s && s->magic == STREAM_MAGIC) return 1;
    return 0;
}

TD_EXPORT int acltd_stream_ok(const char *name, aclrtStream s) {
    if (!s) {
        acltd_set_error("%s: the default stream (NULL) is not supported by the test double; create a stream", name);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    LOCK();
    int ok = stream_ok_locked(s);
    UNLOCK();
    if (!ok) {
        acltd_set_error("%s: %p is not a live stream", name, s);
        return ACL_ERROR_RT_INVALID_HANDLE;
    }
    return 0;
}

TD_EXPORT aclError aclrtCreateStream(aclrtStream *out) {
    int st = acltd_enter("aclrtCreateStream");
    if (st) return st;
    if ((st = acltd_need_context("aclrtCreateStream"))) return st;
    if (!out) {
        acltd_set_error("aclrtCreateStream: stream is NULL");
        return ACL_ERROR_INVALID_PARAM;
    }
    stream *s = calloc(1, sizeof *s);
    s->magic = STREAM_MAGIC;
    s->owner = t_ctx;
    LOCK();
    s->next_stream = g_streams;
    g_streams = s;
    g_live_streams++;
    UNLOCK();
    *out = s;
    return ACL_SUCCESS;
}

TD_EXPORT aclError aclrtDestroyStream(aclrtStream h) {
    int st = acltd_enter("aclrtDestroyStream");
    if (st) return st;
    if ((st = acltd_need_context("aclrtDestroyStream"))) return st;
    if ((st = acltd_stream_ok("aclrtDestroyStream", h))) return st;
    stream *s = h;
    LOCK();
    if (s->pending) {
        int64_t n = s->pending;
        UNLOCK();
        acltd_set_error("aclrtDestroyStream: stream still has %lld queued tasks; synchronise it first", (long long)n);
        return ACL_ERROR_RT_PARAM_INVALID;
    }
    for (stream **p = &g_streams; *p; p = &(*p)->next_stream) {
        if (*p == s) {
            *p = s->next_stream;
            break;
        }
    }
    s->magic = 0;
    free(s);
    g_live_streams--;
    UNLOCK();
    return ACL_SUCCESS;
}

TD_EXPORT int acltd_enqueue(aclrtStream h, const char *name, acltd_task_fn run, void (*release)(void *), void *arg) {
    stream *s = h;
    task *t = calloc(1, sizeof *t);
    t->name = name;
    t->run = run;
    t->release = release;
    t->arg = arg;
    LOCK();
    if (!stream_ok_locked(s)) {
        UNLOCK();
        free(t);
        if (release) release(arg);
        acltd_set_error("%s: %p is not a live stream", name, h);
        return ACL_ERROR_RT_INVALID_HANDLE;
    }
    if (s->tail)
        s->tail->next = t;
    else
        s->head = t;
    s->tail = t;
    s->pending++;
    UNLOCK();
    return 0;
}

TD_EXPORT aclError aclrtSynchronizeStream(aclrtStream h) {
    int st = acltd_enter("aclrtSynchronizeStream");
    if (st) return st;
    if ((st = acltd_need_context("aclrtSynchronizeStream"))) return st;
    if ((st = acltd_stream_ok("aclrtSynchronizeStream", h))) return st;
    stream *s = h;
    int status = 0;
    char msg[2048] = "";
    for (;;) {
        LOCK();
        task *t = s->head;
        if (!t) {
            UNLOCK();
            break;
        }
        s->head = t->next;
        if (!s->head) s->tail = NULL;
        UNLOCK();
        if (status == 0) {
            /* Injected device-side failures are named "exec:<call>". */
            char ename[160];
            snprintf(ename, sizeof ename, "exec:%s", t->name);
            char imsg[512];
            LOCK();
            int inj = enter_locked(ename, imsg, sizeof imsg);
            UNLOCK();
            if (inj) {
                status = inj;
                snprintf(msg, sizeof msg, "task %s failed: %s", t->name, imsg);
            } else {
                int r = t->run(t->arg);
                if (r) {
                    status = r;
                    const char *m = aclGetRecentErrMsg();
                    snprintf(msg, sizeof msg, "task %s failed: %s", t->name, m ? m : "no message");
                }
            }
        }
        /* After a failure the rest of the queue is discarded, as a device
         * stream in error does. */
        if (t->release) t->release(t->arg);
        free(t);
        LOCK();
        s->pending--;
        UNLOCK();
    }
    LOCK();
    if (streams_idle_locked()) release_freed_locked();
    UNLOCK();
    if (status) {
        acltd_set_error("aclrtSynchronizeStream: %s", msg);
        return status;
    }
    return ACL_SUCCESS;
}

/* ---------------- copies ---------------- */

static const char *kind_name(int kind) {
    switch (kind) {
    case ACL_MEMCPY_HOST_TO_HOST: return "HOST_TO_HOST";
    case ACL_MEMCPY_HOST_TO_DEVICE: return "HOST_TO_DEVICE";
    case ACL_MEMCPY_DEVICE_TO_HOST: return "DEVICE_TO_HOST";
    case ACL_MEMCPY_DEVICE_TO_DEVICE: return "DEVICE_TO_DEVICE";
    }
    return "?";
}

/* check_copy validates a copy of count bytes for its kind. async applies
 * the rules of aclrtMemcpyAsync on top of aclrtMemcpy's: the host side must
 * be aclrtMallocHost memory, and both addresses must be 64-byte aligned
 * (CANN's aclrtMemcpyAsync documentation; aclrtMemcpy has no such rule).
 * How a real device fails a misaligned copy is not documented; the double
 * refuses it at the call, so that a program that breaks the rule fails its
 * tests instead of depending on it. */
static int check_copy(const char *name, void *dst, size_t destMax, const void *src, size_t count, int kind, int async) {
    if (count > destMax) {
        acltd_set_error("%s: count %zu exceeds destMax %zu", name, count, destMax);
        return ACL_ERROR_INVALID_PARAM;
    }
    if (count == 0) return 0;
    if (!dst || !src) {
        acltd_set_error("%s: NULL address", name);
        return ACL_ERROR_INVALID_PARAM;
    }
    if (kind < ACL_MEMCPY_HOST_TO_HOST || kind > ACL_MEMCPY_DEVICE_TO_DEVICE) {
        acltd_set_error("%s: unsupported copy kind %d", name, kind);
        return ACL_ERROR_INVALID_PARAM;
    }
    int dst_dev = kind == ACL_MEMCPY_HOST_TO_DEVICE || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    int src_dev = kind == ACL_MEMCPY_DEVICE_TO_HOST || kind == ACL_MEMCPY_DEVICE_TO_DEVICE;
    const void *ptrs[2] = {dst, src};
    int devs[2] = {dst_dev, src_dev};
    const char *roles[2] = {"dst", "src"};
    LOCK();
    for (int i = 0; i < 2; i++) {
        if (devs[i]) {
            if (!find_containing_locked(ptrs[i], count, MEM_DEVICE, ST_LIVE)) {
                UNLOCK();
                acltd_set_error("%s(%s): %s %p..+%zu is not inside a live device allocation", name, kind_name(kind),
                                roles[i], ptrs[i], count);
                return ACL_ERROR_INVALID_PARAM;
            }
        } else {
            if (overlaps_device_locked(ptrs[i], count)) {
                UNLOCK();
                acltd_set_error("%s(%s): %s %p is device memory but the copy kind says host", name, kind_name(kind),
                                roles[i], ptrs[i]);
                return ACL_ERROR_INVALID_PARAM;
            }
            if (async && kind != ACL_MEMCPY_HOST_TO_HOST &&
                !find_containing_locked(ptrs[i], count, MEM_HOST, ST_LIVE)) {
                UNLOCK();
                acltd_set_error("%s(%s): host %s %p must be memory from aclrtMallocHost for an asynchronous copy", name,
                                kind_name(kind), roles[i], ptrs[i]);
                return ACL_ERROR_INVALID_PARAM;
            }
        }
    }
    UNLOCK();
    if (async && (((uintptr_t)dst | (uintptr_t)src) & 63) != 0) {
        acltd_set_error("%s: the source (%p) and destination (%p) addresses must be 64-byte aligned", name, src, dst);
        return ACL_ERROR_INVALID_PARAM;
    }
    return 0;
}

TD_EXPORT aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind kind) {
    int st = acltd_enter("aclrtMemcpy");
    if (st) return st;
    if ((st = acltd_need_context("aclrtMemcpy"))) return st;
    if ((st = check_copy("aclrtMemcpy", dst, destMax, src, count, kind, 0))) return st;
    /* Synchronous with the host, but not ordered after work queued on
     * streams: like the real call, it does not wait for them. */
    if (count) memmove(dst, src, count);
    return ACL_SUCCESS;
}

typedef struct {
    void *dst;
    const void *src;
    size_t count;
    int kind;
} copy_task;

static int run_copy(void *arg) {
    copy_task *c = arg;
    /* Re-check at execution: the memory may have been freed since. */
    int st = check_copy("aclrtMemcpyAsync", c->dst, c->count, c->src, c->count, c->kind, 1);
    if (st) return ACL_ERROR_RT_AICORE_EXCEPTION;
    memmove(c->dst, c->src, c->count);
    return 0;
}

TD_EXPORT aclError aclrtMemcpyAsync(void *dst, size_t destMax, const void *src, size_t count, aclrtMemcpyKind kind,
                                    aclrtStream stream) {
    int st = acltd_enter("aclrtMemcpyAsync");
    if (st) return st;
    if ((st = acltd_need_context("aclrtMemcpyAsync"))) return st;
    if ((st = acltd_stream_ok("aclrtMemcpyAsync", stream))) return st;
    if ((st = check_copy("aclrtMemcpyAsync", dst, destMax, src, count, kind, 1))) return st;
    if (count == 0) return ACL_SUCCESS;
    copy_task *c = malloc(sizeof *c);
    *c = (copy_task){dst, src, count, kind};
    return acltd_enqueue(stream, "aclrtMemcpyAsync", run_copy, free, c);
}

/* ---------------- control API for the tests ---------------- */

/* acltest_reset clears the call log, the per-call counts and every
 * injection. Allocations and objects are not touched. */
TD_EXPORT void acltest_reset(void) {
    LOCK();
    for (int i = 0; i < g_nnames; i++) g_counts[i] = 0;
    g_nlog = 0;
    g_log_dropped = 0;
    memset(g_inj, 0, sizeof g_inj);
    g_dev_limit = 0;
    g_dev_peak = g_dev_bytes;
    UNLOCK();
}

/* acltest_inject makes the call named name fail with status and message
 * msg, after skip further calls of it have succeeded, times times (0: every
 * later call). A name "exec:<call>" fails the queued work of <call> when
 * its stream is synchronised. Returns 0, or -1 when the table is full. */
TD_EXPORT int acltest_inject(const char *name, int64_t skip, int64_t times, int32_t status, const char *msg) {
    LOCK();
    for (int i = 0; i < MAX_INJ; i++) {
        injection *in = &g_inj[i];
        if (in->active) continue;
        memset(in, 0, sizeof *in);
        in->active = 1;
        snprintf(in->name, sizeof in->name, "%s", name);
        snprintf(in->msg, sizeof in->msg, "%s", msg ? msg : "");
        in->skip = skip;
        in->times = times;
        in->status = status;
        UNLOCK();
        return 0;
    }
    UNLOCK();
    return -1;
}

/* acltest_fired returns how many times injections on name have fired. */
TD_EXPORT int64_t acltest_fired(const char *name) {
    int64_t n = 0;
    LOCK();
    for (int i = 0; i < MAX_INJ; i++)
        if (g_inj[i].active && strcmp(g_inj[i].name, name) == 0) n += g_inj[i].fired;
    UNLOCK();
    return n;
}

TD_EXPORT void acltest_set_mem_limit(int64_t bytes) {
    LOCK();
    g_dev_limit = bytes;
    UNLOCK();
}

/* acltest_set_mem_info sets what aclrtGetMemInfo reports for attr.
 * Returns 0, or -1 for an attribute the double does not know or a
 * negative size. */
TD_EXPORT int acltest_set_mem_info(int32_t attr, int64_t freeBytes, int64_t totalBytes) {
    if (attr < 0 || attr >= TD_NMEMATTR || freeBytes < 0 || totalBytes < 0) return -1;
    LOCK();
    g_mem_free[attr] = freeBytes;
    g_mem_total[attr] = totalBytes;
    UNLOCK();
    return 0;
}

/* acltest_reset_mem_info restores what aclrtGetMemInfo reports by default
 * (acltest_reset leaves it alone, as it leaves the chip's name). */
TD_EXPORT void acltest_reset_mem_info(void) {
    LOCK();
    for (int i = 0; i < TD_NMEMATTR; i++) g_mem_free[i] = g_mem_total[i] = 0;
    g_mem_free[ACL_HBM_MEM] = g_mem_total[ACL_HBM_MEM] = TD_DEFAULT_HBM;
    UNLOCK();
}

/* acltest_set_soc_name sets what aclrtGetSocName returns: name, NULL for
 * an empty name, the default (an Atlas A2 part) for a NULL name. */
TD_EXPORT void acltest_set_soc_name(const char *name) {
    LOCK();
    snprintf(g_soc, sizeof g_soc, "%s", name ? name : DEFAULT_SOC);
    UNLOCK();
}

TD_EXPORT void acltest_set_device_count(int32_t n) {
    LOCK();
    g_ndev = n < 0 ? 0 : (n > MAX_DEV ? MAX_DEV : n);
    UNLOCK();
}

TD_EXPORT int64_t acltest_call_count(const char *name) {
    int64_t n = 0;
    LOCK();
    for (int i = 0; i < g_nnames; i++)
        if (strcmp(g_names[i], name) == 0) n = g_counts[i];
    UNLOCK();
    return n;
}

/* acltest_call_log writes the logged call names, one per line, into buf
 * (at most cap bytes, NUL-terminated when cap > 0) and returns the length
 * the whole log needs. */
TD_EXPORT int64_t acltest_call_log(char *buf, int64_t cap) {
    int64_t need = 0;
    LOCK();
    for (int64_t i = 0; i < g_nlog; i++) {
        const char *n = g_names[g_log[i]];
        int64_t l = (int64_t)strlen(n);
        if (buf && need + l + 1 < cap) {
            memcpy(buf + need, n, l);
            buf[need + l] = '\n';
        }
        need += l + 1;
    }
    if (buf && cap > 0) buf[need < cap ? need : cap - 1] = 0;
    UNLOCK();
    return need;
}

/* acltest_live reports a counter: device_allocs, device_bytes,
 * device_peak_bytes, host_allocs, tensors, scalars, int_arrays,
 * bool_arrays, executors, streams, contexts, pending_tasks, inited. -1 for
 * an unknown name. */
TD_EXPORT int64_t acltest_live(const char *what) {
    int64_t r = -1;
    LOCK();
    if (!strcmp(what, "device_allocs")) r = g_dev_live;
    else if (!strcmp(what, "device_bytes")) r = g_dev_bytes;
    else if (!strcmp(what, "device_peak_bytes")) r = g_dev_peak;
    else if (!strcmp(what, "host_allocs")) r = g_host_live;
    else if (!strcmp(what, "tensors")) r = g_objs[TD_TENSOR];
    else if (!strcmp(what, "scalars")) r = g_objs[TD_SCALAR];
    else if (!strcmp(what, "int_arrays")) r = g_objs[TD_INTARRAY];
    else if (!strcmp(what, "bool_arrays")) r = g_objs[TD_BOOLARRAY];
    else if (!strcmp(what, "executors")) r = g_objs[TD_EXECUTOR];
    else if (!strcmp(what, "streams")) r = g_live_streams;
    else if (!strcmp(what, "contexts")) r = g_live_ctx;
    else if (!strcmp(what, "inited")) r = g_inited;
    else if (!strcmp(what, "pending_tasks")) {
        r = 0;
        for (stream *s = g_streams; s; s = s->next_stream) r += s->pending;
    }
    UNLOCK();
    return r;
}

/* acltest_loaded_libs returns the operator libraries that registered
 * themselves, comma-separated, in load order. */
TD_EXPORT const char *acltest_loaded_libs(void) { return g_libs; }

/* acltest_clear_thread_context makes the calling thread have no current
 * context, as a thread that never called aclrtSetDevice or
 * aclrtSetCurrentContext. */
TD_EXPORT void acltest_clear_thread_context(void) { t_ctx = NULL; }

/* acltest_peek copies n bytes of device memory at p into out without
 * synchronising anything: it shows what the device holds right now.
 * Returns 0, or -1 when p..p+n is not live device memory. */
TD_EXPORT int acltest_peek(const void *p, int64_t n, void *out) {
    if (acltd_device_range(p, n) != 0) return -1;
    memcpy(out, p, n);
    return 0;
}
