#include "iser/scsi/logical_unit.h"

#include <algorithm>
#include <utility>

#include "iser/scsi/cdb.h"
#include "iser/scsi/commands.h"

namespace iser::scsi {

namespace {
constexpr size_t kMaxUaPerNexus = 16;
}  // namespace

const PrRegistration* PrState::Find(const std::string& nexus) const {
  for (const PrRegistration& r : registrations) {
    if (r.nexus_key == nexus) return &r;
  }
  return nullptr;
}

LogicalUnit::LogicalUnit(uint64_t lun, std::shared_ptr<store::BlockStore> store,
                         LogicalUnitConfig config)
    : lun_(lun), store_(std::move(store)), config_(std::move(config)) {
  uint32_t bs = store_->block_size();
  limits_.max_transfer_blocks = config_.max_transfer_bytes / bs;
  limits_.optimal_transfer_blocks =
      std::min<uint32_t>(limits_.max_transfer_blocks, (1u << 20) / bs);
  // libiscsi Inquiry.BlockLimits wants MAXIMUM UNMAP LBA COUNT <= 1M blocks.
  limits_.max_unmap_blocks = uint32_t(std::min<uint64_t>(1u << 20, (1ull << 30) / bs));
  // WRITE SAME is bounded like a transfer: libiscsi's WriteSame*.Unmap writes (with WRITE16)
  // and reads back MAXIMUM WRITE SAME LENGTH blocks when it is >= 65536.
  limits_.max_write_same_blocks = limits_.max_transfer_blocks;
  for (uint8_t e = 1; e < 8; ++e) {
    if (uint64_t(bs) << e == config_.physical_block_size) limits_.physical_exponent = e;
  }
  mode_.wce = config_.write_cache_enabled;
}

void LogicalUnit::Execute(CommandPtr cmd) {
  std::span<const uint8_t> cdb = cmd->task.cdb;
  uint8_t opcode = cdb[0];
  bool opcode_known = false;
  const CommandDesc* desc = FindCommand(opcode, ServiceActionOf(cdb), &opcode_known);
  bool reports_ua =
      !(opcode == op::kInquiry || opcode == op::kReportLuns || opcode == op::kRequestSense);
  std::optional<SenseCode> ua;
  {
    absl::MutexLock lock(&mu);
    cmd->descriptor_sense = mode_.d_sense;
    nexuses_.insert(cmd->nexus_key);
    if (reports_ua) {
      auto it = ua_.find(cmd->nexus_key);
      if (it != ua_.end() && !it->second.empty()) {
        ua = it->second.front();
        it->second.pop_front();
      }
    }
  }
  if (ua) {
    Fail(std::move(cmd), *ua);
    return;
  }
  if (desc == nullptr) {
    if (opcode_known) {
      FailCdbField(std::move(cmd), 1, 4);
    } else {
      Fail(std::move(cmd), sense::kInvalidOpcode);
    }
    return;
  }
  cmd->desc = desc;
  if (cdb.size() < desc->cdb_size) {
    Fail(std::move(cmd), sense::kInvalidOpcode);
    return;
  }
  // NACA is not supported (NORMACA = 0 in INQUIRY).
  if (cdb[desc->cdb_size - 1] & 0x04) {
    FailCdbField(std::move(cmd), desc->cdb_size - 1, 2);
    return;
  }
  bool conflict = false;
  bool stopped = false;
  {
    absl::MutexLock lock(&mu);
    conflict = ReservationConflict(*cmd);
    stopped = desc->needs_medium && !started_;
  }
  if (conflict) {
    Conflict(std::move(cmd));
    return;
  }
  if (stopped) {
    Fail(std::move(cmd), sense::kNotReadyStartUnitRequired);
    return;
  }
  desc->handler(std::move(cmd));
}

bool LogicalUnit::ReservationConflict(const Command& cmd) {
  const std::string& me = cmd.nexus_key;
  Access access = cmd.desc->access;
  uint8_t opcode = cmd.cdb()[0];
  if (spc2_holder && *spc2_holder != me) {
    // SPC-2 reservation held by another nexus: only these get through (RELEASE from a
    // non-holder is a successful no-op, decided by its handler).
    if (opcode == op::kRelease6 || opcode == op::kRelease10) return false;
    if (access == Access::kAlways && opcode != op::kPersistentReserveIn) return false;
    return true;
  }
  if (access == Access::kReserve) {
    // SPC-3 5.5.1: RESERVE/RELEASE conflict while persistent reservations are in use.
    return pr.reserved || !pr.registrations.empty();
  }
  if (!pr.reserved || pr.IsHolder(me)) return false;
  bool registered = pr.Find(me) != nullptr;
  switch (access) {
    case Access::kAlways:
    case Access::kNoData:
    case Access::kPrOut:
    case Access::kReserve:
      return false;
    case Access::kRead:
      switch (pr.type) {
        case PrType::kWriteExclusive:
        case PrType::kWriteExclusiveRegistrantsOnly:
        case PrType::kWriteExclusiveAllRegistrants:
          return false;
        case PrType::kExclusiveAccess:
          return true;
        case PrType::kExclusiveAccessRegistrantsOnly:
        case PrType::kExclusiveAccessAllRegistrants:
          return !registered;
      }
      return true;
    case Access::kWrite:
      switch (pr.type) {
        case PrType::kWriteExclusive:
        case PrType::kExclusiveAccess:
          return true;
        default:
          return !registered;
      }
  }
  return true;
}

void LogicalUnit::NexusSeen(const std::string& nexus_key) {
  absl::MutexLock lock(&mu);
  nexuses_.insert(nexus_key);
}

void LogicalUnit::NexusCreated(const std::string& nexus_key) {
  absl::MutexLock lock(&mu);
  nexuses_.insert(nexus_key);
  auto& q = ua_[nexus_key];
  q.clear();
  q.push_back(sense::kPowerOnReset);
}

void LogicalUnit::NexusLost(const std::string& nexus_key) {
  absl::MutexLock lock(&mu);
  if (spc2_holder && *spc2_holder == nexus_key) spc2_holder.reset();
  prevent_.erase(nexus_key);
  ua_.erase(nexus_key);
}

void LogicalUnit::Reset(SenseCode ua, bool clear_reservations) {
  absl::MutexLock lock(&mu);
  spc2_holder.reset();
  prevent_.clear();
  for (const std::string& n : nexuses_) {
    auto& q = ua_[n];
    q.clear();  // a reset supersedes older unit attentions
    q.push_back(ua);
  }
  (void)clear_reservations;  // persistent reservations survive resets (SPC-4 5.13.1)
}

void LogicalUnit::CapacityChanged() { AddUaAllExcept("", sense::kCapacityDataChanged); }

void LogicalUnit::AddUa(const std::string& nexus_key, SenseCode code) {
  absl::MutexLock lock(&mu);
  auto& q = ua_[nexus_key];
  if (std::find(q.begin(), q.end(), code) != q.end()) return;
  if (q.size() >= kMaxUaPerNexus) q.pop_front();
  q.push_back(code);
}

void LogicalUnit::AddUaAllExcept(const std::string& except_nexus, SenseCode code) {
  std::vector<std::string> targets;
  {
    absl::MutexLock lock(&mu);
    for (const std::string& n : nexuses_) {
      if (n != except_nexus) targets.push_back(n);
    }
  }
  for (const std::string& n : targets) AddUa(n, code);
}

std::optional<SenseCode> LogicalUnit::PopUa(const std::string& nexus_key) {
  absl::MutexLock lock(&mu);
  auto it = ua_.find(nexus_key);
  if (it == ua_.end() || it->second.empty()) return std::nullopt;
  SenseCode c = it->second.front();
  it->second.pop_front();
  return c;
}

ModeParams LogicalUnit::mode() const {
  absl::MutexLock lock(&mu);
  return mode_;
}

void LogicalUnit::set_mode(const ModeParams& m, const std::string& by_nexus) {
  {
    absl::MutexLock lock(&mu);
    if (mode_ == m) return;
    mode_ = m;
  }
  AddUaAllExcept(by_nexus, sense::kModeParametersChanged);
}

bool LogicalUnit::WriteProtected() const {
  if (config_.read_only) return true;
  absl::MutexLock lock(&mu);
  return mode_.swp;
}

bool LogicalUnit::started() const {
  absl::MutexLock lock(&mu);
  return started_;
}

void LogicalUnit::set_started(bool s) {
  absl::MutexLock lock(&mu);
  started_ = s;
}

bool LogicalUnit::PreventRemoval() const {
  absl::MutexLock lock(&mu);
  return !prevent_.empty();
}

void LogicalUnit::SetPrevent(const std::string& nexus, bool prevent) {
  absl::MutexLock lock(&mu);
  if (prevent) {
    prevent_.insert(nexus);
  } else {
    prevent_.erase(nexus);
  }
}

void LogicalUnit::RunCaw(absl::AnyInvocable<void()> run,
                         std::function<void(std::function<void()>)> post) {
  {
    absl::MutexLock lock(&mu);
    if (caw_running_) {
      caw_queue_.push_back(QueuedCaw{std::move(run), std::move(post)});
      return;
    }
    caw_running_ = true;
  }
  run();
}

void LogicalUnit::CawDone() {
  QueuedCaw next;
  {
    absl::MutexLock lock(&mu);
    if (caw_queue_.empty()) {
      caw_running_ = false;
      return;
    }
    next = std::move(caw_queue_.front());
    caw_queue_.pop_front();
  }
  if (next.post) {
    auto shared = std::make_shared<absl::AnyInvocable<void()>>(std::move(next.run));
    next.post([shared] { (*shared)(); });
  } else {
    next.run();
  }
}

}  // namespace iser::scsi
