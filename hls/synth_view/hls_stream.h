/**
 * hls_stream.h of the synthesis view (gsbsim/hlsgen/synth_view.py): hls::stream as Vitis HLS
 * offers it to synthesizable code, declarations only.  Compiling a generated top against it
 * with __SYNTHESIS__ defined proves that the synthesis branch uses nothing else: the
 * const char* constructor, read, write, empty, full.  Declared, never defined: the view is
 * compiled, not linked.  (Not Vitis' header, and not the one shipped inside the hls4ml wheel.)
 */
#ifndef GSB_SYNTH_VIEW_HLS_STREAM_H
#define GSB_SYNTH_VIEW_HLS_STREAM_H

namespace hls {

template <typename T>
class stream {
public:
    explicit stream(const char* name);
    T read();
    void read(T& value);
    void write(const T& value);
    bool empty();
    bool full();

private:
    stream(const stream&);             // a channel, not a value
    stream& operator=(const stream&);
};

}  // namespace hls

#endif  // GSB_SYNTH_VIEW_HLS_STREAM_H
