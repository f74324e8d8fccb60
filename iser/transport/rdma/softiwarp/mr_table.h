// The STag table of one software iWARP device: memory regions by STag, with their
// protection domain, access rights, bounds and valid/invalidated state.
//
// STag = index(24) << 8 | key(8), as siw: the key changes every time an index is
// reused, so a stale STag never names a new region. Index 0 is never handed out.
#ifndef ISER_TRANSPORT_RDMA_SOFTIWARP_MR_TABLE_H_
#define ISER_TRANSPORT_RDMA_SOFTIWARP_MR_TABLE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "iser/transport/rdma/softiwarp/ddp_rdmap_wire.h"

namespace iser::softiwarp {

enum class MrCheck {
  kOk,
  kInvalidStag,   // no region with this STag (unknown index or stale key)
  kInvalidated,   // region exists but its STag was invalidated
  kPdMismatch,    // region belongs to another protection domain
  kAccess,        // region lacks the access right
  kToWrap,        // to + len overflows 64 bits
  kBounds,        // [to, to+len) not inside the region
};

struct MrEntry {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t access = 0;
  uint32_t pd_id = 0;
  uint32_t stag = 0;
  bool in_use = false;
  bool valid = false;
};

class MrTable {
 public:
  // Returns the new STag.
  uint32_t Register(uint32_t pd_id, uint64_t addr, uint64_t length, uint32_t access);
  void Deregister(uint32_t stag);
  // Checks that [to, to + len) lies in the region `stag` of `pd_id` with `access`.
  // TO is an absolute virtual address (base-tagged, as siw and Linux iSER).
  MrCheck Check(uint32_t stag, uint32_t pd_id, uint64_t to, uint64_t len, uint32_t access) const;
  // Invalidates `stag` (Send with Invalidate, Local Invalidate).
  MrCheck Invalidate(uint32_t stag, uint32_t pd_id);
  // Makes an invalidated STag valid again (for tests and re-advertisement).
  absl::Status Revalidate(uint32_t stag);
  const MrEntry* Find(uint32_t stag) const;
  size_t size() const;

 private:
  std::vector<MrEntry> entries_{1};  // index 0 reserved
  std::vector<uint32_t> free_;
  uint8_t next_key_ = 1;
};

// Terminate codes for a failed check (RFC 5041 sec 7.2 for tagged placement, RFC 5040
// sec 7 remote protection for a Read Request's source). Access failures of tagged
// placement map to "invalid STag" as siw does.
TermError TaggedTermError(MrCheck check);
TermError ReadSourceTermError(MrCheck check);

}  // namespace iser::softiwarp

#endif  // ISER_TRANSPORT_RDMA_SOFTIWARP_MR_TABLE_H_
