/* OpenNSA: the name under which CANN's earlier documentation included the selected-attention infer
 * operator. Same declarations as aclnnop/aclnn_nsa_selected_attention_infer.h. */
#ifndef OPENNSA_ACLNNOP_ACLNN_NSA_SELECT_ATTENTION_INFER_H_
#define OPENNSA_ACLNNOP_ACLNN_NSA_SELECT_ATTENTION_INFER_H_

#include "aclnn_nsa_selected_attention_infer.h" /* same directory */

#endif /* OPENNSA_ACLNNOP_ACLNN_NSA_SELECT_ATTENTION_INFER_H_ */
