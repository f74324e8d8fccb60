// Plain data types of the verbs-shaped RDMA API (iser/transport/rdma/verbs.h, cm.h).
//
// Every type and constant here mirrors libibverbs/librdmacm one to one so that a
// libibverbs backend is a thin cast layer: the numeric values of the enums are the
// values of the matching IBV_* constants, and each struct has the fields of its ibv_*
// counterpart that an RC queue pair on iWARP can use.
//
// Completion model (as verbs): every work request carries a caller-chosen 64-bit wr_id
// and its completion is a WorkCompletion polled from a CompletionQueue. Callers that
// want "each work request carries its completion callback" (isert's ib_cqe) put a
// pointer to their descriptor in wr_id and dispatch on it after polling; see
// WrIdOf()/FromWrId() below. This is the shape that maps onto ibv_post_send and
// ibv_poll_cq without an extra indirection in the verbs backend.
#ifndef ISER_TRANSPORT_RDMA_RDMA_TYPES_H_
#define ISER_TRANSPORT_RDMA_RDMA_TYPES_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace iser::rdma {

// ibv_access_flags.
enum Access : uint32_t {
  kAccessLocalWrite = 1,   // IBV_ACCESS_LOCAL_WRITE
  kAccessRemoteWrite = 2,  // IBV_ACCESS_REMOTE_WRITE
  kAccessRemoteRead = 4,   // IBV_ACCESS_REMOTE_READ
};

// ibv_wc_status (the subset an iWARP RC QP produces; same numeric values).
enum class WcStatus : uint32_t {
  kSuccess = 0,          // IBV_WC_SUCCESS
  kLocLenErr = 1,        // IBV_WC_LOC_LEN_ERR: inbound Send longer than the receive buffer
  kLocQpOpErr = 2,       // IBV_WC_LOC_QP_OP_ERR
  kLocProtErr = 4,       // IBV_WC_LOC_PROT_ERR: bad lkey / bounds / access in a local SGE
  kWrFlushErr = 5,       // IBV_WC_WR_FLUSH_ERR: flushed because the QP went to error
  kRemInvReqErr = 9,     // IBV_WC_REM_INV_REQ_ERR
  kRemAccessErr = 10,    // IBV_WC_REM_ACCESS_ERR: peer Terminated with a protection error
  kRemOpErr = 11,        // IBV_WC_REM_OP_ERR: peer Terminated with an operation error
  kFatalErr = 19,        // IBV_WC_FATAL_ERR
  kGeneralErr = 21,      // IBV_WC_GENERAL_ERR
};
std::string_view WcStatusName(WcStatus status);

// ibv_wc_opcode.
enum class WcOpcode : uint32_t {
  kSend = 0,        // IBV_WC_SEND
  kRdmaWrite = 1,   // IBV_WC_RDMA_WRITE
  kRdmaRead = 2,    // IBV_WC_RDMA_READ
  kLocalInv = 6,    // IBV_WC_LOCAL_INV
  kRecv = 128,      // IBV_WC_RECV
};

// ibv_wc_flags.
enum WcFlags : uint32_t {
  kWcWithInv = 1u << 3,  // IBV_WC_WITH_INV: invalidated_rkey is valid
};

// ibv_wr_opcode (the iWARP subset; iWARP has no immediate data and no atomics here).
enum class WrOpcode : uint32_t {
  kRdmaWrite = 0,    // IBV_WR_RDMA_WRITE
  kSend = 2,         // IBV_WR_SEND
  kRdmaRead = 4,     // IBV_WR_RDMA_READ
  kLocalInv = 7,     // IBV_WR_LOCAL_INV
  kSendWithInv = 9,  // IBV_WR_SEND_WITH_INV
};

// ibv_send_flags.
enum SendFlags : uint32_t {
  kSendFence = 1,      // IBV_SEND_FENCE (accepted; Reads are always ordered here)
  kSendSignaled = 2,   // IBV_SEND_SIGNALED
  kSendSolicited = 4,  // IBV_SEND_SOLICITED: Send becomes Send with SE on iWARP
};

// ibv_sge.
struct Sge {
  uint64_t addr = 0;
  uint32_t length = 0;
  uint32_t lkey = 0;
};

// ibv_send_wr (single request; ibv_post_send's `next` chain is a loop at the caller).
// The SGE list is copied at post time, as with verbs.
struct SendWr {
  uint64_t wr_id = 0;
  WrOpcode opcode = WrOpcode::kSend;
  uint32_t send_flags = 0;       // SendFlags
  std::span<const Sge> sg_list;  // kRdmaRead: exactly one SGE (iWARP max_sge_rd = 1)
  uint32_t invalidate_rkey = 0;  // kSendWithInv, kLocalInv
  uint64_t remote_addr = 0;      // kRdmaWrite, kRdmaRead (wr.rdma.remote_addr)
  uint32_t rkey = 0;             // kRdmaWrite, kRdmaRead (wr.rdma.rkey)
};

// ibv_recv_wr.
struct RecvWr {
  uint64_t wr_id = 0;
  std::span<const Sge> sg_list;
};

// ibv_wc.
struct WorkCompletion {
  uint64_t wr_id = 0;
  WcStatus status = WcStatus::kSuccess;
  WcOpcode opcode = WcOpcode::kSend;
  uint32_t vendor_err = 0;
  uint32_t byte_len = 0;
  uint32_t invalidated_rkey = 0;  // valid if wc_flags & kWcWithInv
  uint32_t qp_num = 0;
  uint32_t wc_flags = 0;          // WcFlags
};

// ibv_qp_cap.
struct QpCap {
  uint32_t max_send_wr = 128;
  uint32_t max_recv_wr = 128;
  uint32_t max_send_sge = 4;
  uint32_t max_recv_sge = 4;
};

class CompletionQueue;

// ibv_qp_init_attr for IBV_QPT_RC.
struct QpInitAttr {
  CompletionQueue* send_cq = nullptr;
  CompletionQueue* recv_cq = nullptr;
  QpCap cap;
  bool sq_sig_all = false;
};

// ibv_qp_state.
enum class QpState : uint32_t {
  kReset = 0, kInit = 1, kRtr = 2, kRts = 3, kSqd = 4, kSqe = 5, kError = 6,
};

// Helpers for the "descriptor with its own completion callback" pattern on top of
// wr_id: a descriptor type embeds a callback and its address travels in wr_id.
template <typename T>
inline uint64_t WrIdOf(T* descriptor) {
  return reinterpret_cast<uint64_t>(descriptor);
}
template <typename T>
inline T* FromWrId(uint64_t wr_id) {
  return reinterpret_cast<T*>(wr_id);
}

}  // namespace iser::rdma

#endif  // ISER_TRANSPORT_RDMA_RDMA_TYPES_H_
