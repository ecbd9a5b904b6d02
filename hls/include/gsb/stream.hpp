/**
 * gsb/stream.hpp: the FIFO kernels talk through.
 *
 * In C-simulation gsb::stream<T> is a small std::deque-backed FIFO of our own.
 * Unlike the vendor C-sim model it never blocks: reading an empty stream
 * throws gsb::csim_error naming the stream (a single-threaded C-sim that waits
 * for data would hang forever, or read garbage).  It also records the deepest
 * fill level, which is the FIFO depth a dataflow implementation needs.
 *
 * For synthesis (Vitis HLS defines __SYNTHESIS__) it is the tool's own
 * hls::stream from the tool installation.  No test here needs Vitis, and the
 * project never uses the hls_stream.h shipped inside the hls4ml wheel.
 */
#ifndef GSB_STREAM_HPP
#define GSB_STREAM_HPP

#ifdef __SYNTHESIS__
#include <hls_stream.h>
namespace gsb {
template <typename T>
using stream = hls::stream<T>;
}  // namespace gsb
#else

#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "gsb/common.hpp"

namespace gsb {

template <typename T>
class stream {
public:
    explicit stream(const std::string& name = "unnamed") : name_(name) {}
    stream(const stream&) = delete;             // a FIFO is a channel, not a value
    stream& operator=(const stream&) = delete;

    /** Pop the oldest element; throws csim_error if the stream is empty. */
    T read() {
        GSB_CHECK(!fifo_.empty(), "gsb::stream '" << name_ << "': read from an empty stream ("
                                                  << reads_ << " elements read so far)");
        T value = fifo_.front();
        fifo_.pop_front();
        ++reads_;
        return value;
    }
    void read(T& value) { value = read(); }

    void write(const T& value) {
        fifo_.push_back(value);
        if (fifo_.size() > max_size_) max_size_ = fifo_.size();
    }

    bool empty() const { return fifo_.empty(); }
    std::size_t size() const { return fifo_.size(); }
    /** Deepest fill level seen so far (the FIFO depth a dataflow design needs). */
    std::size_t max_size() const { return max_size_; }
    const std::string& name() const { return name_; }
    /** C-simulation probe: the elements waiting in the FIFO, oldest first, without reading them
     *  (the generated top function traces a finished kernel's output stream with it). */
    std::vector<T> contents() const { return std::vector<T>(fifo_.begin(), fifo_.end()); }

private:
    std::string name_;
    std::deque<T> fifo_;
    std::size_t max_size_ = 0;
    std::size_t reads_ = 0;
};

}  // namespace gsb

#endif  // __SYNTHESIS__
#endif  // GSB_STREAM_HPP
