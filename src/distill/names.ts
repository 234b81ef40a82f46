/**
 * Teacher tensor name of a layer's attention map (attention transfer): the teacher side computes it from the layer's
 * maps, so only H·W values per sample are cached. Kept free of imports: teacher loading reads it.
 */
export const ATTENTION_PREFIX = 'attention:';
