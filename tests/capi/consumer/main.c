/* A C11 program against the installed CANN-compatible headers. */
#include <stdio.h>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"

int main(void) {
    void* p = NULL;
    uint32_t devices = 0;
    if (aclInit(NULL) != ACL_SUCCESS || aclrtGetDeviceCount(&devices) != ACL_SUCCESS || devices != 1) return 1;
    if (aclrtMalloc(&p, 64, ACL_MEM_MALLOC_HUGE_FIRST) != ACL_SUCCESS) return 1;
    if (aclrtMemset(p, 64, 0, 64) != ACL_SUCCESS || aclrtFree(p) != ACL_SUCCESS) return 1;
    if (aclrtMalloc(&p, 0, ACL_MEM_MALLOC_HUGE_FIRST) != ACL_ERROR_INVALID_PARAM) return 1;
    printf("C consumer: %s\n", aclGetRecentErrMsg());
    return aclFinalize() == ACL_SUCCESS ? 0 : 1;
}
