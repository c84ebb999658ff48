/* OpenNSA: CANN-compatible aclnn setup and executor control. */
#ifndef OPENNSA_ACLNN_ACLNN_BASE_H_
#define OPENNSA_ACLNN_ACLNN_BASE_H_

#include "acl/acl_rt.h"
#include "aclnn/acl_meta.h"

#ifdef __cplusplus
extern "C" {
#endif

ACL_FUNC_VISIBILITY aclnnStatus aclnnInit(const char* configPath);
ACL_FUNC_VISIBILITY aclnnStatus aclnnFinalize(void);

/* An executor is released by its launch unless marked repeatable; a repeatable one runs any number
 * of times until aclDestroyAclOpExecutor. Launching an executor that is not live returns
 * ACLNN_ERR_PARAM_INVALID. */
ACL_FUNC_VISIBILITY aclnnStatus aclSetAclOpExecutorRepeatable(aclOpExecutor* executor);
ACL_FUNC_VISIBILITY aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor* executor);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACLNN_ACLNN_BASE_H_ */
