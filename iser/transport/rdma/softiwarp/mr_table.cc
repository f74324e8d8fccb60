#include "iser/transport/rdma/softiwarp/mr_table.h"

namespace iser::softiwarp {

uint32_t MrTable::Register(uint32_t pd_id, uint64_t addr, uint64_t length, uint32_t access) {
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
  }
  uint8_t key = next_key_++;
  if (next_key_ == 0) next_key_ = 1;
  MrEntry& e = entries_[index];
  e = MrEntry{addr, length, access, pd_id, index << 8 | key, true, true};
  return e.stag;
}

void MrTable::Deregister(uint32_t stag) {
  uint32_t index = stag >> 8;
  if (index == 0 || index >= entries_.size() || entries_[index].stag != stag) return;
  entries_[index] = MrEntry{};
  free_.push_back(index);
}

const MrEntry* MrTable::Find(uint32_t stag) const {
  uint32_t index = stag >> 8;
  if (index == 0 || index >= entries_.size()) return nullptr;
  const MrEntry& e = entries_[index];
  if (!e.in_use || e.stag != stag) return nullptr;
  return &e;
}

MrCheck MrTable::Check(uint32_t stag, uint32_t pd_id, uint64_t to, uint64_t len,
                       uint32_t access) const {
  const MrEntry* e = Find(stag);
  if (e == nullptr) return MrCheck::kInvalidStag;
  if (!e->valid) return MrCheck::kInvalidated;
  if (e->pd_id != pd_id) return MrCheck::kPdMismatch;
  if ((e->access & access) != access) return MrCheck::kAccess;
  if (to + len < to) return MrCheck::kToWrap;
  if (to < e->addr || to + len > e->addr + e->length) return MrCheck::kBounds;
  return MrCheck::kOk;
}

MrCheck MrTable::Invalidate(uint32_t stag, uint32_t pd_id) {
  uint32_t index = stag >> 8;
  if (index == 0 || index >= entries_.size()) return MrCheck::kInvalidStag;
  MrEntry& e = entries_[index];
  if (!e.in_use || e.stag != stag) return MrCheck::kInvalidStag;
  if (e.pd_id != pd_id) return MrCheck::kPdMismatch;
  e.valid = false;
  return MrCheck::kOk;
}

absl::Status MrTable::Revalidate(uint32_t stag) {
  uint32_t index = stag >> 8;
  if (index == 0 || index >= entries_.size() || entries_[index].stag != stag ||
      !entries_[index].in_use)
    return absl::NotFoundError("unknown STag");
  entries_[index].valid = true;
  return absl::OkStatus();
}

size_t MrTable::size() const { return entries_.size() - 1 - free_.size(); }

TermError TaggedTermError(MrCheck check) {
  uint8_t code = kDdpEcodeTInvalidStag;
  switch (check) {
    case MrCheck::kBounds: code = kDdpEcodeTBaseBounds; break;
    case MrCheck::kPdMismatch: code = kDdpEcodeTStagNotAssoc; break;
    case MrCheck::kToWrap: code = kDdpEcodeTToWrap; break;
    default: break;
  }
  return MakeTermError(TermLayer::kDdp, kDdpEtypeTagged, code);
}

TermError ReadSourceTermError(MrCheck check) {
  uint8_t code = kRdmapEcodeInvalidStag;
  switch (check) {
    case MrCheck::kBounds: code = kRdmapEcodeBaseBounds; break;
    case MrCheck::kAccess: code = kRdmapEcodeAccessRights; break;
    case MrCheck::kPdMismatch: code = kRdmapEcodeStagNotAssoc; break;
    case MrCheck::kToWrap: code = kRdmapEcodeToWrap; break;
    default: break;
  }
  return MakeTermError(TermLayer::kRdmap, kRdmapEtypeRemoteProtection, code);
}

}  // namespace iser::softiwarp
