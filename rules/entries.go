package rules

// Limits returns the limits the engine applies, so an entrance that decodes a request as a
// stream can stop at the same bounds the rules would refuse the whole request at.
func (e *Engine) Limits() Limits { return e.opts.Limits }

// CheckEventCount refuses the n-th event (counted from 1) of a publish being decoded, once n
// passes MaxEventsPerPublish, with the error the whole publish would get: an entrance stops
// reading there instead of building every event of a hostile body first.
func (l Limits) CheckEventCount(n int) error {
	if n > l.MaxEventsPerPublish {
		return tooLarge("at most %d events per publish", l.MaxEventsPerPublish)
	}
	return nil
}

// CheckDataEntry refuses the n-th key (counted from 1, repeats included) of a data change
// being decoded once it passes MaxDataKeys, or a key or value over its size, with the error
// the whole change would get. The rest of checkData (UTF-8, empty keys) still runs on what
// was decoded.
func (l Limits) CheckDataEntry(n int, k, v string) error {
	if n > l.MaxDataKeys {
		return tooLarge("at most %d data keys per node", l.MaxDataKeys)
	}
	if len(k) > l.MaxDataKeyBytes {
		return tooLarge("data key %.32q… is longer than %d bytes", k, l.MaxDataKeyBytes)
	}
	if len(v) > l.MaxDataValueBytes {
		return tooLarge("value of data key %.32q is longer than %d bytes", k, l.MaxDataValueBytes)
	}
	return nil
}
