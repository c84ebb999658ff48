/* OpenNSA: CANN-compatible process setup and error reporting; includes the runtime API. */
#ifndef OPENNSA_ACL_ACL_H_
#define OPENNSA_ACL_ACL_H_

#include "acl_rt.h"

#ifdef __cplusplus
extern "C" {
#endif

/* aclInit counts its calls; a call after the first returns ACL_ERROR_REPEAT_INITIALIZE (as CANN
 * does). aclFinalize clears the count; aclFinalizeReference decrements it. configPath may be NULL. */
ACL_FUNC_VISIBILITY aclError aclInit(const char* configPath);
ACL_FUNC_VISIBILITY aclError aclFinalize(void);
ACL_FUNC_VISIBILITY aclError aclFinalizeReference(uint64_t* refCount);

/* The one-line message of the last error on the calling thread ("" if none yet). The pointer stays
 * valid until the next failing call on this thread. */
ACL_FUNC_VISIBILITY const char* aclGetRecentErrMsg(void);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACL_ACL_H_ */
