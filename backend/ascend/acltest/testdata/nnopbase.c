/*
 * ACL test double: libnnopbase.so, the aclnn object constructors
 * (aclCreateTensor, aclCreateScalar, aclCreateIntArray, aclCreateBoolArray
 * and their destructors), with the signatures of aclnn/acl_meta.h.
 */
#include <stdlib.h>
#include <string.h>

#include "acl_double.h"

static int dtype_ok(int dt) {
    switch (dt) {
    case ACL_FLOAT:
    case ACL_INT32:
    case ACL_INT64:
    case ACL_BOOL:
    case ACL_UINT8:
    case ACL_INT8:
    case ACL_DOUBLE:
        return 1;
    }
    return 0;
}

/* aclCreateTensor describes device memory: the view (dims, element
 * strides, element offset) of a storage of storageDims elements starting at
 * tensorData. It returns NULL on bad arguments. */
TD_EXPORT aclTensor *aclCreateTensor(const int64_t *viewDims, uint64_t viewDimsNum, aclDataType dataType,
                                     const int64_t *stride, int64_t offset, aclFormat format,
                                     const int64_t *storageDims, uint64_t storageDimsNum, void *tensorData) {
    if (acltd_enter("aclCreateTensor")) return NULL;
    if (viewDimsNum > TD_MAXDIM || storageDimsNum > TD_MAXDIM) {
        acltd_set_error("aclCreateTensor: %llu view dims / %llu storage dims, at most %d supported",
                        (unsigned long long)viewDimsNum, (unsigned long long)storageDimsNum, TD_MAXDIM);
        return NULL;
    }
    if ((viewDimsNum && (!viewDims || !stride)) || (storageDimsNum && !storageDims)) {
        acltd_set_error("aclCreateTensor: NULL dims or strides");
        return NULL;
    }
    if (!dtype_ok(dataType)) {
        acltd_set_error("aclCreateTensor: data type %d is not supported", dataType);
        return NULL;
    }
    if (offset < 0) {
        acltd_set_error("aclCreateTensor: negative offset %lld", (long long)offset);
        return NULL;
    }
    aclTensor *t = calloc(1, sizeof *t);
    t->magic = TD_MAGIC_TENSOR;
    t->v.ndim = (int)viewDimsNum;
    for (uint64_t i = 0; i < viewDimsNum; i++) {
        if (viewDims[i] < 0) {
            free(t);
            acltd_set_error("aclCreateTensor: negative extent %lld", (long long)viewDims[i]);
            return NULL;
        }
        t->v.dims[i] = viewDims[i];
        t->v.strides[i] = stride[i];
    }
    t->v.offset = offset;
    t->v.dtype = dataType;
    t->v.format = format;
    int64_t se = 1;
    for (uint64_t i = 0; i < storageDimsNum; i++) se *= storageDims[i];
    t->v.storage_elems = se;
    t->v.data = tensorData;
    acltd_count(TD_TENSOR, 1);
    return t;
}

TD_EXPORT aclnnStatus aclDestroyTensor(const aclTensor *tensor) {
    int st = acltd_enter("aclDestroyTensor");
    if (st) return st;
    if (!tensor) {
        acltd_set_error("aclDestroyTensor: NULL tensor");
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    aclTensor *t = (aclTensor *)tensor;
    if (t->magic != TD_MAGIC_TENSOR) {
        acltd_set_error("aclDestroyTensor: %p is not a live tensor (destroyed twice?)", (void *)t);
        return ACLNN_ERR_PARAM_INVALID;
    }
    t->magic = TD_MAGIC_DEAD;
    free(t);
    acltd_count(TD_TENSOR, -1);
    return ACLNN_SUCCESS;
}

/* aclCreateScalar copies the value that value points to, read as
 * dataType. */
TD_EXPORT aclScalar *aclCreateScalar(void *value, aclDataType dataType) {
    if (acltd_enter("aclCreateScalar")) return NULL;
    if (!value) {
        acltd_set_error("aclCreateScalar: NULL value");
        return NULL;
    }
    double v;
    switch (dataType) {
    case ACL_FLOAT: v = *(float *)value; break;
    case ACL_DOUBLE: v = *(double *)value; break;
    case ACL_INT32: v = *(int32_t *)value; break;
    case ACL_INT64: v = (double)*(int64_t *)value; break;
    case ACL_BOOL: v = *(bool *)value ? 1 : 0; break;
    default:
        acltd_set_error("aclCreateScalar: data type %d is not supported", dataType);
        return NULL;
    }
    aclScalar *s = calloc(1, sizeof *s);
    s->magic = TD_MAGIC_SCALAR;
    s->dtype = dataType;
    s->value = v;
    acltd_count(TD_SCALAR, 1);
    return s;
}

TD_EXPORT aclnnStatus aclDestroyScalar(const aclScalar *scalar) {
    int st = acltd_enter("aclDestroyScalar");
    if (st) return st;
    aclScalar *s = (aclScalar *)scalar;
    if (!s) {
        acltd_set_error("aclDestroyScalar: NULL scalar");
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (s->magic != TD_MAGIC_SCALAR) {
        acltd_set_error("aclDestroyScalar: %p is not a live scalar", (void *)s);
        return ACLNN_ERR_PARAM_INVALID;
    }
    s->magic = TD_MAGIC_DEAD;
    free(s);
    acltd_count(TD_SCALAR, -1);
    return ACLNN_SUCCESS;
}

TD_EXPORT aclIntArray *aclCreateIntArray(const int64_t *value, uint64_t size) {
    if (acltd_enter("aclCreateIntArray")) return NULL;
    if (size && !value) {
        acltd_set_error("aclCreateIntArray: NULL value");
        return NULL;
    }
    aclIntArray *a = calloc(1, sizeof *a);
    a->magic = TD_MAGIC_INTARR;
    a->n = size;
    a->v = calloc(size ? size : 1, sizeof(int64_t));
    if (size) memcpy(a->v, value, size * sizeof(int64_t));
    acltd_count(TD_INTARRAY, 1);
    return a;
}

TD_EXPORT aclnnStatus aclDestroyIntArray(const aclIntArray *array) {
    int st = acltd_enter("aclDestroyIntArray");
    if (st) return st;
    aclIntArray *a = (aclIntArray *)array;
    if (!a) {
        acltd_set_error("aclDestroyIntArray: NULL array");
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (a->magic != TD_MAGIC_INTARR) {
        acltd_set_error("aclDestroyIntArray: %p is not a live int array", (void *)a);
        return ACLNN_ERR_PARAM_INVALID;
    }
    a->magic = TD_MAGIC_DEAD;
    free(a->v);
    free(a);
    acltd_count(TD_INTARRAY, -1);
    return ACLNN_SUCCESS;
}

TD_EXPORT aclBoolArray *aclCreateBoolArray(const bool *value, uint64_t size) {
    if (acltd_enter("aclCreateBoolArray")) return NULL;
    if (size && !value) {
        acltd_set_error("aclCreateBoolArray: NULL value");
        return NULL;
    }
    aclBoolArray *a = calloc(1, sizeof *a);
    a->magic = TD_MAGIC_BOOLARR;
    a->n = size;
    a->v = calloc(size ? size : 1, sizeof(bool));
    if (size) memcpy(a->v, value, size * sizeof(bool));
    acltd_count(TD_BOOLARRAY, 1);
    return a;
}

TD_EXPORT aclnnStatus aclDestroyBoolArray(const aclBoolArray *array) {
    int st = acltd_enter("aclDestroyBoolArray");
    if (st) return st;
    aclBoolArray *a = (aclBoolArray *)array;
    if (!a) {
        acltd_set_error("aclDestroyBoolArray: NULL array");
        return ACLNN_ERR_PARAM_NULLPTR;
    }
    if (a->magic != TD_MAGIC_BOOLARR) {
        acltd_set_error("aclDestroyBoolArray: %p is not a live bool array", (void *)a);
        return ACLNN_ERR_PARAM_INVALID;
    }
    a->magic = TD_MAGIC_DEAD;
    free(a->v);
    free(a);
    acltd_count(TD_BOOLARRAY, -1);
    return ACLNN_SUCCESS;
}
