/**
 * gsb/stream.hpp: the FIFO kernels talk through.
 *
 * For synthesis (Vitis HLS defines __SYNTHESIS__; its csim/cosim GSB_VITIS) it is the tool's hls::stream; kernels use
 * only what that offers (the const char* constructor, read, write, empty, full), which the
 * tests prove by compiling every generated project against a declaration-only hls::stream.
 *
 * In C-simulation gsb::stream<T> is a FIFO of our own that behaves like the hardware one:
 * set_depth(d) bounds it (GSB_DEPTH in generated code, next to the `#pragma HLS STREAM depth=`
 * it mirrors; without it the stream is unbounded, like a testbench's hls::stream), a write to
 * a full stream and a read from an empty one block until another process of the dataflow
 * (gsb/dataflow.hpp) makes room or data.  When no process can go on, the simulation stops
 * with a gsb::deadlock_error naming the stalled processes and streams; in a sequential
 * C-simulation (no dataflow region) reading an empty stream is that error at once.
 * Compiling with -DGSB_FIFO_DEPTH_CAP=k caps every depth at k (the deadlock demonstration).
 * The stream also keeps every value written (history()): the generated top traces its
 * tensors from it after the dataflow ran, without touching the FIFO.
 */
#ifndef GSB_STREAM_HPP
#define GSB_STREAM_HPP

#include "gsb/common.hpp"

#ifndef GSB_CSIM
#include <hls_stream.h>
namespace gsb {
template <typename T>
using stream = hls::stream<T>;
}  // namespace gsb
#else

#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "gsb/common.hpp"
#include "gsb/dataflow.hpp"

namespace gsb {

template <typename T>
class stream {
public:
    explicit stream(const char* name = "unnamed") : name_(name) {}
    explicit stream(const std::string& name) : name_(name) {}
    stream(const stream&) = delete;             // a FIFO is a channel, not a value
    stream& operator=(const stream&) = delete;

    /** The FIFO's depth (0 = unbounded), capped at GSB_FIFO_DEPTH_CAP when that is defined. */
    void set_depth(std::size_t depth) {
#ifdef GSB_FIFO_DEPTH_CAP
        if (depth == 0 || depth > std::size_t(GSB_FIFO_DEPTH_CAP)) depth = GSB_FIFO_DEPTH_CAP;
#endif
        depth_ = depth;
    }
    std::size_t depth() const { return depth_; }

    /** Pop the oldest element, waiting while the stream is empty. */
    T read() {
        df::scheduler& s = df::scheduler::get();
        std::unique_lock<std::mutex> lk(s.mutex);
        s.wait_until(lk, this, [this]() { return !fifo_.empty(); }, [this]() {
            std::ostringstream os;
            os << "gsb::stream '" << name_ << "': read from an empty stream (" << reads_ << " elements read so far)";
            return os.str();
        });
        T value = fifo_.front();
        fifo_.pop_front();
        ++reads_;
        s.notify(this);
        return value;
    }
    void read(T& value) { value = read(); }

    /** Push, waiting while the stream is full. */
    void write(const T& value) {
        df::scheduler& s = df::scheduler::get();
        std::unique_lock<std::mutex> lk(s.mutex);
        s.wait_until(lk, this, [this]() { return depth_ == 0 || fifo_.size() < depth_; }, [this]() {
            std::ostringstream os;
            os << "gsb::stream '" << name_ << "': write to a full stream (depth " << depth_ << ", " << reads_
               << " elements read so far)";
            return os.str();
        }, false, true);
        fifo_.push_back(value);
        history_.push_back(value);
        if (fifo_.size() > max_size_) max_size_ = fifo_.size();
        s.notify(this);
    }

    bool empty() const {
        std::lock_guard<std::mutex> lk(df::scheduler::get().mutex);
        return fifo_.empty();
    }
    bool full() const {
        std::lock_guard<std::mutex> lk(df::scheduler::get().mutex);
        return depth_ != 0 && fifo_.size() >= depth_;
    }
    std::size_t size() const {
        std::lock_guard<std::mutex> lk(df::scheduler::get().mutex);
        return fifo_.size();
    }
    /** Deepest fill level seen so far. */
    std::size_t max_size() const { return max_size_; }
    const std::string& name() const { return name_; }
    /** C-simulation trace: every element ever written, oldest first. */
    std::vector<T> history() const {
        std::lock_guard<std::mutex> lk(df::scheduler::get().mutex);
        return std::vector<T>(history_.begin(), history_.end());
    }

private:
    std::string name_;
    std::deque<T> fifo_;
    std::vector<T> history_;
    std::size_t depth_ = 0;
    std::size_t max_size_ = 0;
    std::size_t reads_ = 0;
};

}  // namespace gsb

#endif  // GSB_CSIM
#endif  // GSB_STREAM_HPP
